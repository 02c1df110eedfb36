// Reverse shells and droppers in scripts (shell, Python, Perl, PHP). Every rule: meta severity, family,
// description; a hit and a near miss in tests/scanner/test_rules.py. Written here for hostguard; see
// docs/malware.md for how to add one.
//
// Precision: scripts open sockets, use /dev/tcp for health checks and download files; a reverse shell ties the
// connection to a shell's standard input and output, and a dropper makes what it downloaded executable or pipes
// it to a shell. Multi-part rules ask for the parts within a few hundred bytes of each other, around the first
// 32 occurrences of the anchor (`for any i in (1..32)`: a loop over every occurrence makes yara-x warn of slow scans).

rule shell_reverse_dev_tcp
{
    meta:
        severity = "critical"
        family = "reverse_shell"
        description = "A shell whose input and output are redirected to a network connection through bash's /dev/tcp (a reverse shell)"
    strings:
        // bash -i >& /dev/tcp/HOST/PORT, sh -i 2>&1 >/dev/udp/...
        $interactive = /\b(ba|z|k|da)?sh\s+-i\s{0,4}([0-9]?>&?|&>)\s{0,4}\/dev\/(tcp|udp)\//
        // ... /dev/tcp/HOST/PORT 0>&1  (stdin joined to the socket)
        $stdin = /\/dev\/(tcp|udp)\/[^\s\/]{1,64}\/[0-9]{1,5}\s{0,4}(0>&1|0<&1|<&1)/
        // exec 5<>/dev/tcp/HOST/PORT; ... sh <&5 >&5
        $fd = /<>\s{0,4}\/dev\/(tcp|udp)\/.{0,160}\b(ba|z|k|da)?sh\s{1,4}(-i\s{1,4})?<&\s{0,2}[0-9]/s
    condition:
        any of them
}

rule shell_reverse_netcat
{
    meta:
        severity = "critical"
        family = "reverse_shell"
        description = "A netcat, ncat or socat handing a shell to a network connection (nc -e /bin/sh, a fifo loop through nc, socat exec:sh)"
    strings:
        $nc_e = /\b(nc|ncat|netcat)(\.traditional|\.openbsd)?\s[^\n|;]{0,60}-[a-z]{0,4}[ec]\s{1,4}["']?(\/usr)?(\/bin\/)?(ba|z|k|da)?sh\b/
        $fifo = /mkfifo\s[^\n]{0,80}\|\s{0,4}(\/bin\/)?(ba|z|k|da)?sh\s+-i[^\n]{0,80}\|\s{0,4}(nc|ncat|netcat|telnet|openssl\s+s_client)\s/
        $socat = /\bsocat\s[^\n]{0,80}exec:["']?(\/bin\/)?(ba|z|k|da)?sh\b[^\n]{0,80}(tcp|ssl|openssl)[46]?(-connect)?:/ nocase
    condition:
        any of them
}

rule shell_reverse_python_socket
{
    meta:
        severity = "critical"
        family = "reverse_shell"
        description = "Python that connects a socket and duplicates it onto its standard input and output before starting a shell"
    strings:
        $connect = /\.connect\s*\(\s*\(/
        $dup2 = /\bdup2\s*\(\s*[a-z_][a-z0-9_]{0,20}\s*\.\s*fileno\s*\(\s*\)\s*,\s*[0-2]\s*\)/ nocase
        $shell = /(pty\s*\.\s*spawn\s*\(|subprocess\s*\.\s*(call|Popen|run)\s*\(\s*\[\s*["']\/bin\/(ba|z|da)?sh["']|["']\/bin\/(ba|z|da)?sh["']\s*,\s*["']-i["'])/
    condition:
        for any i in (1..32) : (
            $connect in (@dup2[i] - 400 .. @dup2[i]) and $shell in (@dup2[i] .. @dup2[i] + 400)
        )
}

rule shell_reverse_perl_socket
{
    meta:
        severity = "critical"
        family = "reverse_shell"
        description = "Perl that connects a socket, points its standard input and output at it and executes a shell"
    strings:
        $connect = /\b(connect\s*\(|IO::Socket::INET\s*->\s*new\s*\()/
        $redirect = /open\s*\(\s*STD(IN|OUT|ERR)\s*,\s*["']?\s*[<>]&/
        $shell = /\bexec\s*[\(\s]\s*\{?\s*["'](\/bin\/)?(ba|z|k|da)?sh\b/
    condition:
        for any i in (1..32) : (
            $connect in (@redirect[i] - 400 .. @redirect[i]) and $shell in (@redirect[i] .. @redirect[i] + 400)
        )
}

rule shell_reverse_php_socket
{
    meta:
        severity = "critical"
        family = "reverse_shell"
        description = "PHP that opens a connection and hands it to a shell (fsockopen or socket_create joined to /bin/sh through proc_open or exec)"
    strings:
        $open = "<?" ascii
        $sock = /\b(fsockopen|pfsockopen|stream_socket_client|socket_create)\s*\(/ nocase
        $shell = /(proc_open|shell_exec|exec|system|passthru|popen)\s*\(\s*["'](\/bin\/)?(ba|z|da)?sh\b/ nocase
    condition:
        $open and
        for any i in (1..32) : ( $shell in (@sock[i] .. @sock[i] + 400) )
}

rule shell_download_pipe_shell
{
    meta:
        severity = "medium"
        family = "dropper"
        description = "A script that downloads a file and pipes it straight into a shell, running whatever the server sends"
    strings:
        // at the start of a line (not commented out), curl/wget ... | sh (also through sudo)
        $pipe = /(^|\n)[ \t]{0,16}[^#\n]{0,40}\b(curl|wget)\s[^\n|;#]{0,200}\|\s{0,4}(sudo\s+)?(\/bin\/|\/usr\/bin\/)?(ba|z|k|da)?sh\b/
    condition:
        // a script (a #! line or a shell file name): READMEs and package metadata show such lines as instructions
        $pipe and (uint16(0) == 0x2123 or extension == "sh" or extension == "bash")
}

rule shell_dropper_tmp_exec
{
    meta:
        severity = "high"
        family = "dropper"
        description = "A script that downloads a file into /tmp, /var/tmp or /dev/shm and makes it executable (how miners and bots are dropped)"
    strings:
        $fetch = /\b(curl|wget|tftp|fetch)\s[^\n]{0,200}(\/tmp|\/var\/tmp|\/dev\/shm)\//
        $chmod = /\bchmod\s{1,4}(\+x|[0-7]?[1357][0-7]{2}|[ugoa]{1,3}\+[rw]{0,2}x)\s{1,4}[^\n]{0,40}(\/tmp|\/var\/tmp|\/dev\/shm)\//
    condition:
        for any i in (1..32) : ( $chmod in (@fetch[i] .. @fetch[i] + 600) )
}

rule shell_cron_persistence
{
    meta:
        severity = "high"
        family = "persistence"
        description = "A script that writes a cron line which downloads or connects back on a schedule (persistence for a miner or a reverse shell)"
    strings:
        // echo "*/5 * * * * curl ... | sh" | crontab -   /  ... >> /var/spool/cron/root  /  > /etc/cron.d/x, where the
        // job pipes a download into a shell or connects out (a job that only pings a health-check URL stays quiet)
        $write = /\b(echo|printf)\s{1,4}["']?(\*|@reboot|@hourly|[0-9]{1,2})[^\n]{0,200}((curl|wget)\s[^\n|]{0,200}\|\s{0,4}(ba|da)?sh\b|\/dev\/tcp\/|\bnc\s|\bncat\s|python[23]?\s+-c)[^\n]{0,200}(\|\s{0,4}crontab\s|>>?\s{0,4}\/(etc\/cron|var\/spool\/cron))/
    condition:
        $write
}
