// Executables where a web server serves files: programs and scripts under a web root, PHP hidden behind an image
// name, server configuration that runs images as PHP. These rules read the globals the scanner sets per file
// (in_web_root, extension, file_name); PHP in an image is looked for near its first 32 '<?php' openings. Every
// rule: meta severity, family, description; a hit and a near miss in tests/scanner/test_rules.py. Written here
// for hostguard; see docs/malware.md for how to add one.

rule web_root_elf
{
    meta:
        severity = "high"
        family = "web_executable"
        description = "A Linux program (ELF) stored under a web root, where web applications never keep one and attackers drop bots and miners"
    condition:
        in_web_root and uint32(0) == 0x464c457f
}

rule web_root_shebang_script
{
    meta:
        severity = "medium"
        family = "web_executable"
        description = "A shell, Perl or Python script (it starts with #!) stored under a web root, where it may be run or downloaded; expected only in a cgi-bin"
    strings:
        $shebang = /^#![ \t]{0,4}\/[a-z0-9\/_. \-]{0,40}\b(sh|bash|dash|zsh|ksh|perl|python[0-9.]{0,4}|ruby|lua)\b/
    condition:
        in_web_root and uint16(0) == 0x2123 and $shebang and not (extension == "cgi")
}

rule web_php_in_image
{
    meta:
        severity = "high"
        family = "web_executable"
        description = "PHP code inside a file named as an image (.jpg, .png, .gif, ...), a way to slip a webshell past upload filters"
    strings:
        $php = /<\?(php|=)[\s]/ nocase
        $code = /(\$_(GET|POST|REQUEST|COOKIE|FILES|SERVER)\s*\[|\b(eval|assert|system|passthru|shell_exec|exec|base64_decode|include|require|file_put_contents)\s*[\(\s'"])/ nocase
    condition:
        (extension == "jpg" or extension == "jpeg" or extension == "png" or extension == "gif" or extension == "bmp" or
         extension == "ico" or extension == "webp" or extension == "tif" or extension == "tiff") and
        for any i in (1..32) : ( $code in (@php[i] .. @php[i] + 2000) )
}

rule web_htaccess_runs_images
{
    meta:
        severity = "high"
        family = "web_executable"
        description = "An .htaccess file that tells Apache to run images or text files as PHP, so an uploaded 'image' becomes a webshell"
    strings:
        $type = /(AddType|AddHandler)\s{1,8}application\/x-httpd-(php|ea-php)[0-9]{0,2}\s[^\n]{0,80}\.(jpe?g|png|gif|ico|bmp|webp|txt|log)\b/ nocase
        $handler = /<Files(Match)?\s[^\n]{0,80}\b(jpe?g|png|gif|ico|bmp|webp|txt|log)[^\n]{0,40}>\s{0,200}SetHandler\s{1,8}application\/x-httpd-php/ nocase
    condition:
        file_name == ".htaccess" and ($type or $handler)
}
