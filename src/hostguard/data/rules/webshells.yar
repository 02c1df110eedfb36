// PHP, JSP, ASP and script webshells. Every rule: meta severity, family, description; a hit and a near miss
// in tests/scanner/test_rules.py. Written here for hostguard; see docs/malware.md for how to add one.
//
// Precision: a rule anchors on request data reaching a code or command sink in one expression (or within a few
// hundred bytes, around the first 32 occurrences of the sink), never on a sink alone: applications call exec()
// and read $_GET, only a webshell joins them.

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

rule php_webshell_command_request
{
    meta:
        severity = "critical"
        family = "webshell"
        description = "PHP that runs a shell command taken straight from the request (system, exec, passthru, shell_exec, popen, proc_open or backticks)"
    strings:
        $open = "<?" ascii
        // the sink's argument is the request value itself, or the value with a redirection appended
        $call = /\b(system|passthru|shell_exec|exec|popen|proc_open|pcntl_exec)\s*\(\s*(@\s*)?(base64_decode\s*\(\s*|stripslashes\s*\(\s*|trim\s*\(\s*){0,2}\$_(GET|POST|REQUEST|COOKIE|SERVER)\s*\[/ nocase
        // echo `$_GET['c']`; (documentation quotes request variables in backticks too, never as a statement)
        $tick = /(=|\becho|\bprint)\s{0,4}\(?\s{0,4}`\s{0,4}\$_(GET|POST|REQUEST|COOKIE)\s*\[[^\]`]{1,40}\]\s{0,4}`\s{0,4}\)?\s{0,4};/ nocase
    condition:
        $open and ($call or $tick)
}

rule php_webshell_uploader
{
    meta:
        severity = "high"
        family = "webshell"
        description = "PHP that writes an uploaded or posted file to a path the requester chooses (a dropper for further webshells)"
    strings:
        $open = "<?" ascii
        // move_uploaded_file(tmp_name, <name the client sent, or a request parameter>)
        $move = /move_uploaded_file\s*\(\s*\$_FILES\s*\[[^\]]{1,40}\]\s*\[\s*['"]tmp_name['"]\s*\]\s*,\s*(\$_(GET|POST|REQUEST|COOKIE)\s*\[|\$_FILES\s*\[[^\]]{1,40}\]\s*\[\s*['"]name['"]\s*\]\s*\))/ nocase
        // file_put_contents / fwrite(fopen()) with both the path and the content from the request
        $put = /(file_put_contents|fopen)\s*\(\s*\$_(GET|POST|REQUEST|COOKIE)\s*\[[^\]]{1,40}\]\s*,\s*(base64_decode\s*\(\s*)?\$_(GET|POST|REQUEST|COOKIE)\s*\[/ nocase
    condition:
        $open and ($move or $put)
}

rule jsp_webshell_exec_request
{
    meta:
        severity = "critical"
        family = "webshell"
        description = "A JSP or JSPX page that runs an operating-system command taken from a request parameter"
    strings:
        $jsp = "<%" ascii
        $jspx = "<jsp:scriptlet" ascii nocase
        $exec = /(Runtime\s*\.\s*getRuntime\s*\(\s*\)\s*\.\s*exec|new\s+ProcessBuilder)\s*\(/
        $param = /request\s*\.\s*(getParameter|getHeader)\s*\(/
    condition:
        ($jsp or $jspx) and
        for any i in (1..32) : ( $param in (@exec[i] - 300 .. @exec[i] + 300) )
}

rule jsp_webshell_class_loader
{
    meta:
        severity = "critical"
        family = "webshell"
        description = "A JSP or JSPX page that turns bytes from the request into a Java class and runs it (an in-memory webshell loader)"
    strings:
        $jsp = "<%" ascii
        $jspx = "<jsp:scriptlet" ascii nocase
        $define = /\bdefineClass\s*\(/
        $body = /request\s*\.\s*(getReader\s*\(\s*\)|getInputStream\s*\(\s*\)|getParameter\s*\()/
        $decode = /(BASE64Decoder|Base64\s*\.\s*getDecoder|Cipher\s*\.\s*getInstance|decodeBase64)/
    condition:
        ($jsp or $jspx) and $define and $body and $decode
}

rule asp_webshell_eval_request
{
    meta:
        severity = "critical"
        family = "webshell"
        description = "An ASP or ASPX page that evaluates code taken straight from the request (Eval, Execute or ExecuteGlobal of Request)"
    strings:
        $asp = "<%" ascii
        $run = /\b(eval|execute|executeglobal)\s*[\( ]\s*request\s*(\.\s*(form|querystring|item|params)\s*)?[\(\[]/ nocase
    condition:
        $asp and $run
}

rule aspx_webshell_process_request
{
    meta:
        severity = "critical"
        family = "webshell"
        description = "An ASP or ASPX page that starts a command shell with a command taken from the request"
    strings:
        $asp = "<%" ascii
        $start = /(ProcessStartInfo|Process\s*\.\s*Start\s*\(|WScript\s*\.\s*Shell|Shell\s*\.\s*Application)/ nocase
        $shell = /(cmd(\.exe)?["'\s,]{1,8}\/c|\/bin\/(ba)?sh|powershell(\.exe)?["'\s,]{1,8}-)/ nocase
        $req = /Request\s*(\.\s*(Form|QueryString|Item|Params)\s*)?[\(\[]\s*"/ nocase
    condition:
        $asp and $start and $shell and
        for any i in (1..32) : ( $req in (@start[i] - 400 .. @start[i] + 400) )
}

rule python_webshell_exec_request
{
    meta:
        severity = "critical"
        family = "webshell"
        description = "A Python web script that runs a command or code taken straight from the request (os.system, subprocess, eval or exec of form data)"
    strings:
        $run = /\b(os\s*\.\s*(system|popen)|subprocess\s*\.\s*(check_output|Popen|call|run|getoutput|getstatusoutput)|eval|exec)\s*\(\s*(request\s*\.\s*(args|form|values|GET|POST)\s*(\.\s*get\s*\(|\[)|[a-zA-Z_][a-zA-Z0-9_]{0,20}\s*\.\s*getvalue\s*\(\s*['"]|[a-zA-Z_][a-zA-Z0-9_]{0,20}\s*\[\s*['"][^'"]{1,20}['"]\s*\]\s*\.\s*value)/
    condition:
        $run
}

rule perl_webshell_exec_request
{
    meta:
        severity = "critical"
        family = "webshell"
        description = "A Perl CGI script that runs a shell command taken straight from a request parameter or the query string"
    strings:
        $run = /\b(system|exec|qx)\s*[\(\{]\s*(\$\w{1,20}\s*->\s*)?param\s*\(/
        $tick = /`\s{0,4}(\$\w{1,20}\s*->\s*)?param\s*\(\s*['"][^'"`]{1,20}['"]\s*\)\s{0,4}`/
        $env = /\b(system|exec|qx)\s*[\(\{]\s*\$ENV\s*\{\s*['"]?QUERY_STRING/
    condition:
        any of them
}
