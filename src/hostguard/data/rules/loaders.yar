// Obfuscated PHP loaders: code that hides what it runs (decode chains, built function names, request data
// called as a function). Every rule: meta severity, family, description; a hit and a near miss in
// tests/scanner/test_rules.py. Written here for hostguard; see docs/malware.md for how to add one.
//
// Precision: applications decode base64 and call eval() (templates, caches); only loaders run what they just
// decoded, build a function's name from pieces, or call what the request names. Each rule needs one of those.

rule php_loader_eval_decoded
{
    meta:
        severity = "critical"
        family = "loader"
        description = "PHP that runs code it has just decoded (eval, assert or create_function over base64_decode, gzinflate, str_rot13 and the like)"
    strings:
        $open = "<?" ascii
        $run = /\b(eval|assert|create_function)\s*\(\s*(@\s*)?(['"]['"]\s*,\s*)?(base64_decode|gzinflate|gzuncompress|gzdecode|str_rot13|strrev|convert_uudecode|hex2bin|rawurldecode|urldecode|pack)\s*\(/ nocase
    condition:
        $open and $run
}

rule php_loader_request_as_function
{
    meta:
        severity = "critical"
        family = "loader"
        description = "PHP that calls a function whose name comes from the request ($_GET['f']($_GET['x']) and the like)"
    strings:
        $open = "<?" ascii
        $call = /\$_(GET|POST|REQUEST|COOKIE|SERVER)\s*\[[^\]\n]{1,40}\]\s*\(/
        // the callback taken from the request: first argument of call_user_func, array_map, ...; second of
        // array_filter, usort, array_walk (their first argument is the data, which may well come from the request)
        $callback = /\b(call_user_func(_array)?|array_map|register_shutdown_function|register_tick_function)\s*\(\s*\$_(GET|POST|REQUEST|COOKIE)\s*\[/ nocase
        $callback2 = /\b(array_filter|array_walk|usort|uasort|uksort)\s*\([^,;()]{1,80},\s*\$_(GET|POST|REQUEST|COOKIE)\s*\[/ nocase
    condition:
        $open and ($call or $callback or $callback2)
}

rule php_loader_hidden_function_name
{
    meta:
        severity = "high"
        family = "loader"
        description = "PHP that spells the name of a code-running function in pieces, backwards or as escape codes so a reader cannot see it"
    strings:
        $open = "<?" ascii
        // "ev"."al", 'as'.'se'.'rt', "sys"."tem", "base64"."_decode", "gzin"."flate", "she"."ll_exec": the name split
        // into two or more quoted pieces joined by "." (one alternative per place of the first split, later splits optional)
        $cat_eval = /["'](e(["']\s*\.\s*["'])v(["']\s*\.\s*["'])?a(["']\s*\.\s*["'])?l|ev(["']\s*\.\s*["'])a(["']\s*\.\s*["'])?l|eva(["']\s*\.\s*["'])l)["']/ nocase
        $cat_assert = /["'](a(["']\s*\.\s*["'])s(["']\s*\.\s*["'])?s(["']\s*\.\s*["'])?e(["']\s*\.\s*["'])?r(["']\s*\.\s*["'])?t|as(["']\s*\.\s*["'])s(["']\s*\.\s*["'])?e(["']\s*\.\s*["'])?r(["']\s*\.\s*["'])?t|ass(["']\s*\.\s*["'])e(["']\s*\.\s*["'])?r(["']\s*\.\s*["'])?t|asse(["']\s*\.\s*["'])r(["']\s*\.\s*["'])?t|asser(["']\s*\.\s*["'])t)["']/ nocase
        $cat_system = /["'](s(["']\s*\.\s*["'])y(["']\s*\.\s*["'])?s(["']\s*\.\s*["'])?t(["']\s*\.\s*["'])?e(["']\s*\.\s*["'])?m|sy(["']\s*\.\s*["'])s(["']\s*\.\s*["'])?t(["']\s*\.\s*["'])?e(["']\s*\.\s*["'])?m|sys(["']\s*\.\s*["'])t(["']\s*\.\s*["'])?e(["']\s*\.\s*["'])?m|syst(["']\s*\.\s*["'])e(["']\s*\.\s*["'])?m|syste(["']\s*\.\s*["'])m)["']/ nocase
        $cat_shell_exec = /["'](s(["']\s*\.\s*["'])h(["']\s*\.\s*["'])?e(["']\s*\.\s*["'])?l(["']\s*\.\s*["'])?l(["']\s*\.\s*["'])?_(["']\s*\.\s*["'])?e(["']\s*\.\s*["'])?x(["']\s*\.\s*["'])?e(["']\s*\.\s*["'])?c|sh(["']\s*\.\s*["'])e(["']\s*\.\s*["'])?l(["']\s*\.\s*["'])?l(["']\s*\.\s*["'])?_(["']\s*\.\s*["'])?e(["']\s*\.\s*["'])?x(["']\s*\.\s*["'])?e(["']\s*\.\s*["'])?c|she(["']\s*\.\s*["'])l(["']\s*\.\s*["'])?l(["']\s*\.\s*["'])?_(["']\s*\.\s*["'])?e(["']\s*\.\s*["'])?x(["']\s*\.\s*["'])?e(["']\s*\.\s*["'])?c|shel(["']\s*\.\s*["'])l(["']\s*\.\s*["'])?_(["']\s*\.\s*["'])?e(["']\s*\.\s*["'])?x(["']\s*\.\s*["'])?e(["']\s*\.\s*["'])?c|shell(["']\s*\.\s*["'])_(["']\s*\.\s*["'])?e(["']\s*\.\s*["'])?x(["']\s*\.\s*["'])?e(["']\s*\.\s*["'])?c|shell_(["']\s*\.\s*["'])e(["']\s*\.\s*["'])?x(["']\s*\.\s*["'])?e(["']\s*\.\s*["'])?c|shell_e(["']\s*\.\s*["'])x(["']\s*\.\s*["'])?e(["']\s*\.\s*["'])?c|shell_ex(["']\s*\.\s*["'])e(["']\s*\.\s*["'])?c|shell_exe(["']\s*\.\s*["'])c)["']/ nocase
        $cat_decode = /["'](b(["']\s*\.\s*["'])a(["']\s*\.\s*["'])?s(["']\s*\.\s*["'])?e(["']\s*\.\s*["'])?6(["']\s*\.\s*["'])?4(["']\s*\.\s*["'])?_(["']\s*\.\s*["'])?d(["']\s*\.\s*["'])?e(["']\s*\.\s*["'])?c(["']\s*\.\s*["'])?o(["']\s*\.\s*["'])?d(["']\s*\.\s*["'])?e|ba(["']\s*\.\s*["'])s(["']\s*\.\s*["'])?e(["']\s*\.\s*["'])?6(["']\s*\.\s*["'])?4(["']\s*\.\s*["'])?_(["']\s*\.\s*["'])?d(["']\s*\.\s*["'])?e(["']\s*\.\s*["'])?c(["']\s*\.\s*["'])?o(["']\s*\.\s*["'])?d(["']\s*\.\s*["'])?e|bas(["']\s*\.\s*["'])e(["']\s*\.\s*["'])?6(["']\s*\.\s*["'])?4(["']\s*\.\s*["'])?_(["']\s*\.\s*["'])?d(["']\s*\.\s*["'])?e(["']\s*\.\s*["'])?c(["']\s*\.\s*["'])?o(["']\s*\.\s*["'])?d(["']\s*\.\s*["'])?e|base(["']\s*\.\s*["'])6(["']\s*\.\s*["'])?4(["']\s*\.\s*["'])?_(["']\s*\.\s*["'])?d(["']\s*\.\s*["'])?e(["']\s*\.\s*["'])?c(["']\s*\.\s*["'])?o(["']\s*\.\s*["'])?d(["']\s*\.\s*["'])?e|base6(["']\s*\.\s*["'])4(["']\s*\.\s*["'])?_(["']\s*\.\s*["'])?d(["']\s*\.\s*["'])?e(["']\s*\.\s*["'])?c(["']\s*\.\s*["'])?o(["']\s*\.\s*["'])?d(["']\s*\.\s*["'])?e|base64(["']\s*\.\s*["'])_(["']\s*\.\s*["'])?d(["']\s*\.\s*["'])?e(["']\s*\.\s*["'])?c(["']\s*\.\s*["'])?o(["']\s*\.\s*["'])?d(["']\s*\.\s*["'])?e|base64_(["']\s*\.\s*["'])d(["']\s*\.\s*["'])?e(["']\s*\.\s*["'])?c(["']\s*\.\s*["'])?o(["']\s*\.\s*["'])?d(["']\s*\.\s*["'])?e|base64_d(["']\s*\.\s*["'])e(["']\s*\.\s*["'])?c(["']\s*\.\s*["'])?o(["']\s*\.\s*["'])?d(["']\s*\.\s*["'])?e|base64_de(["']\s*\.\s*["'])c(["']\s*\.\s*["'])?o(["']\s*\.\s*["'])?d(["']\s*\.\s*["'])?e|base64_dec(["']\s*\.\s*["'])o(["']\s*\.\s*["'])?d(["']\s*\.\s*["'])?e|base64_deco(["']\s*\.\s*["'])d(["']\s*\.\s*["'])?e|base64_decod(["']\s*\.\s*["'])e)["']/ nocase
        $cat_gzinflate = /["'](g(["']\s*\.\s*["'])z(["']\s*\.\s*["'])?i(["']\s*\.\s*["'])?n(["']\s*\.\s*["'])?f(["']\s*\.\s*["'])?l(["']\s*\.\s*["'])?a(["']\s*\.\s*["'])?t(["']\s*\.\s*["'])?e|gz(["']\s*\.\s*["'])i(["']\s*\.\s*["'])?n(["']\s*\.\s*["'])?f(["']\s*\.\s*["'])?l(["']\s*\.\s*["'])?a(["']\s*\.\s*["'])?t(["']\s*\.\s*["'])?e|gzi(["']\s*\.\s*["'])n(["']\s*\.\s*["'])?f(["']\s*\.\s*["'])?l(["']\s*\.\s*["'])?a(["']\s*\.\s*["'])?t(["']\s*\.\s*["'])?e|gzin(["']\s*\.\s*["'])f(["']\s*\.\s*["'])?l(["']\s*\.\s*["'])?a(["']\s*\.\s*["'])?t(["']\s*\.\s*["'])?e|gzinf(["']\s*\.\s*["'])l(["']\s*\.\s*["'])?a(["']\s*\.\s*["'])?t(["']\s*\.\s*["'])?e|gzinfl(["']\s*\.\s*["'])a(["']\s*\.\s*["'])?t(["']\s*\.\s*["'])?e|gzinfla(["']\s*\.\s*["'])t(["']\s*\.\s*["'])?e|gzinflat(["']\s*\.\s*["'])e)["']/ nocase
        // strrev('lave'), strrev("tressa"), strrev('edoced_46esab')
        $rev = /strrev\s*\(\s*["'](lave|tressa|metsys|cexe_llehs|urhtssap|edoced_46esab|etalfnizg|noitcnuf_etaerc)["']\s*\)/ nocase
        // "\x65\x76\x61\x6c" (eval), "\x61\x73\x73\x65\x72\x74" (assert), "\x62\x61\x73\x65\x36\x34\x5f" (base64_),
        // "\x73\x79\x73\x74\x65\x6d" (system), "\x67\x7a\x69\x6e\x66" (gzinf); octal "\145\166\141\154" (eval)
        $hex_eval = "\\x65\\x76\\x61\\x6c" ascii nocase
        $hex_assert = "\\x61\\x73\\x73\\x65\\x72\\x74" ascii nocase
        $hex_base64 = "\\x62\\x61\\x73\\x65\\x36\\x34\\x5f" ascii nocase
        $hex_system = "\\x73\\x79\\x73\\x74\\x65\\x6d" ascii nocase
        $hex_gzinflate = "\\x67\\x7a\\x69\\x6e\\x66" ascii nocase
        $oct_eval = "\\145\\166\\141\\154" ascii
        $oct_base64 = "\\142\\141\\163\\145\\66\\64" ascii
    condition:
        $open and any of ($cat_*, $rev, $hex_*, $oct_*)
}

rule php_loader_preg_replace_eval
{
    meta:
        severity = "critical"
        family = "loader"
        description = "PHP that runs request data or a decoded blob through preg_replace with the /e modifier (code execution removed from PHP 7 and used by loaders)"
    strings:
        $open = "<?" ascii
        $pre = /preg_replace\s*\(\s*['"][\/#~|!@%][^'"\n]{0,100}[\/#~|!@%][imsxuADSUXJ]{0,6}e[imsxuADSUXJ]{0,6}['"]\s*,/ nocase
        $req = /\$_(GET|POST|REQUEST|COOKIE|SERVER)\s*\[/
        $decode = /\b(base64_decode|gzinflate|gzuncompress|str_rot13|hex2bin)\s*\(/ nocase
    condition:
        $open and $pre and ($req or $decode)
}

rule php_loader_chr_chain
{
    meta:
        severity = "high"
        family = "loader"
        description = "PHP that builds code or a function name from a long chain of chr() calls and runs it"
    strings:
        $open = "<?" ascii
        $chain = /chr\s*\(\s*(0x)?[0-9a-f]{1,3}\s*\)\s*\.\s*chr\s*\(\s*(0x)?[0-9a-f]{1,3}\s*\)\s*\.\s*chr\s*\(\s*(0x)?[0-9a-f]{1,3}\s*\)\s*\.\s*chr\s*\(\s*(0x)?[0-9a-f]{1,3}\s*\)\s*\.\s*chr\s*\(/ nocase
        $run = /\b(eval|assert|create_function)\s*\(/ nocase
        $varcall = /\$\{?\s*\$?[a-z_][a-z0-9_]{0,30}\s*\}?\s*\(\s*\$/ nocase
    condition:
        $open and $chain and ($run or $varcall)
}

rule php_loader_nested_decode_blob
{
    meta:
        severity = "high"
        family = "loader"
        description = "PHP that unpacks a long encoded blob through two or more decoders (gzinflate(base64_decode(...)), str_rot13(base64_decode(...))) and runs the result"
    strings:
        $open = "<?" ascii
        $nest = /\b(gzinflate|gzuncompress|gzdecode|str_rot13|strrev|base64_decode|convert_uudecode)\s*\(\s*(gzinflate|gzuncompress|gzdecode|str_rot13|strrev|base64_decode|convert_uudecode)\s*\(\s*(['"][A-Za-z0-9+\/=\\]{200}|\$)/ nocase
        $run = /\b(eval|assert|create_function)\s*\(/ nocase
        $varcall = /\$[a-z_][a-z0-9_]{0,30}\s*\(\s*\$[a-z_][a-z0-9_]{0,30}\s*\)\s*;/ nocase
    condition:
        $open and $nest and ($run or $varcall)
}
