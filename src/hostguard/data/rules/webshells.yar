// PHP, JSP, ASP and script webshells. Every rule: meta severity, family, description; a hit and a near miss
// in tests/scanner/test_rules.py. Written here for hostguard; see docs/malware.md for how to add one.

rule php_webshell_eval_request
{
    meta:
        severity = "critical"
        family = "webshell"
        description = "PHP that runs code taken straight from the request (eval/assert of $_GET, $_POST, $_REQUEST or $_COOKIE)"
    strings:
        $open = "<?" ascii
        $run = /\b(eval|assert)\s*\(\s*(base64_decode\s*\(\s*)?(stripslashes\s*\(\s*)?\$_(GET|POST|REQUEST|COOKIE)\s*\[/ nocase
    condition:
        $open and $run
}
