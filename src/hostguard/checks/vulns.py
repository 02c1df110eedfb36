"""Vulnerable packages and updates not yet in effect: what "patch in time" asks of a server.

``hostguard scan`` matches the host's packages (the distribution's, Python environments, npm and Composer
projects; live or ``--root``) against the local OSV advisory copy (``hostguard vulns update`` fetches it;
``[vulns] db`` names another) and, on a running system, asks the package manager which security updates
are waiting, compares the running kernel with the newest installed one and finds services still running
libraries an upgrade replaced. ``hostguard vulns scan`` shows the same findings with the packages listed
as not covered; ``hostguard fix`` carries out their upgrade steps.

What could not be looked at is said, never taken for "not vulnerable": no advisory copy, packages from
third-party repositories (the distribution's advisories do not speak of them), web applications no open
advisory feed covers (WordPress core), and sources that could not be read.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

from hostguard.config import setting
from hostguard.engine.context import Context
from hostguard.engine.facts import CONFIG_FILE, STATE, Fact, config_input
from hostguard.engine.registry import Family, check
from hostguard.findings import Finding, SkipReason
from hostguard.host.apkdb import APK_INSTALLED
from hostguard.host.base import Host, HostError, Unavailable
from hostguard.host.packages import DPKG, DPKG_STATUS, DpkgDatabase
from hostguard.host.web.servers import WEB_SERVERS, WebServers
from hostguard.store.state import StateStore
from hostguard.vulns.inventory import DEFAULT_PATHS, DISTRO_MANAGED, Inventory, InventoryOptions, collect_inventory
from hostguard.vulns.pending import PendingResult
from hostguard.vulns.restart import DeletedMapping
from hostguard.vulns.scan import Matched
from hostguard.vulns.virtual_patches import PatchView
from hostguard.vulns.webapps import WebApp

SHOWN = 12  # names listed in one skipped entry's detail


@dataclass(frozen=True)
class VulnsConfig:
    """[vulns]: the advisory copy, where language environments are looked for, and package-list freshness."""

    db: str = setting("", "A local OSV copy (per-ecosystem directories of <ID>.json or all.zip, as osv.dev exports "
                          "them) to match against; empty: the copy `hostguard vulns update` fetched into the "
                          "state directory.")
    paths: tuple[str, ...] = setting(DEFAULT_PATHS, "Directories searched for virtualenvs, npm projects "
                                                    "(package-lock.json, node_modules) and composer.lock files.")
    max_depth: int = setting(6, "How many directories deep `paths` are searched.", min=0, max=64)
    upgrade_env: tuple[str, ...] = setting(
        ("http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY"),
        "Variables `hostguard fix` passes to a virtualenv's pip, npm or composer, which run as the environment's "
        "owner with a minimal environment (e.g. PIP_INDEX_URL for your own package index).")
    max_list_age_days: float = setting(7.0, "The package manager's lists older than this many days are a "
                                            "finding: pending updates newer than them cannot be known.", min=0)


def collect_vulns_inventory(host: Host, cfg: VulnsConfig) -> Inventory:
    """The packages of every ecosystem the host has (unreadable sources are the inventory's problems)."""
    return collect_inventory(host, InventoryOptions(paths=cfg.paths, max_depth=cfg.max_depth))


def collect_matched(host: Host, inventory: Inventory, cfg: VulnsConfig, state: StateStore | None) -> Matched:
    """The inventory matched against the advisory copy (Unavailable when there is none)."""
    from hostguard.vulns.scan import advisory_source, match_inventory

    source = advisory_source(cfg.db, state.directory if state is not None else None)
    return match_inventory(inventory, source, state.cache_dir if state is not None else None)


def collect_pending(host: Host, cfg: VulnsConfig, matched: Matched | None) -> PendingResult:
    """The security updates the host's package manager has waiting, from what it already knows (its lists
    are never refreshed): apk from the cached indexes (also under --root; an update is a security one when
    an advisory that affects the installed version is fixed by it), apt and dnf/yum asked live."""
    from hostguard.vulns.pending import pending_security_updates
    from hostguard.vulns.pending_apk import pending_apk_updates
    from hostguard.vulns.pending_dnf import pending_dnf_updates

    if host.exists(DPKG_STATUS):   # the inventory's order too: dpkg, rpm, apk
        if not host.live:
            raise Unavailable(SkipReason.LIVE_ONLY, "apt is asked about waiting updates on a running system only")
        result = pending_security_updates(max_list_age_days=cfg.max_list_age_days)
    elif not host.exists(APK_INSTALLED):
        if not host.live:
            raise Unavailable(SkipReason.LIVE_ONLY, "dnf is asked about waiting updates on a running system only")
        result = pending_dnf_updates(max_metadata_age_days=cfg.max_list_age_days)
    else:
        result = pending_apk_updates(host, max_index_age_days=cfg.max_list_age_days,
                                     security=fixed_by(matched.findings if matched is not None else ()))
    if not result.available:
        raise Unavailable(result.reason or SkipReason.ERROR, result.detail)
    return result


def fixed_by(findings: Iterable[Finding]) -> Callable[[str, str, str], Sequence[str]]:
    """For apk's pending updates: the advisories of the ``vulns.package`` findings about an origin at its
    installed version that the waiting version fixes (a fix at or below it)."""
    from hostguard.vulns.findings import CHECK_ID
    from hostguard.vulns.versions import InvalidVersion, UnsupportedEcosystem, compare

    by_origin: dict[tuple[str, str], list[tuple[str, str, str]]] = {}
    for f in findings:
        if f.id == CHECK_ID and str(f.target.get("ecosystem", "")).startswith(("Alpine", "Wolfi", "Chainguard")):
            for adv in f.evidence.get("advisories", ()):
                if adv.get("fix"):
                    by_origin.setdefault((str(f.target["name"]), str(f.evidence["installed"])), []).append(
                        (str(f.target["ecosystem"]), str(adv["id"]), str(adv["fix"])))

    def lookup(origin: str, installed: str, new: str) -> Sequence[str]:
        ids = []
        for ecosystem, vid, fix in by_origin.get((origin, installed), ()):
            try:
                if compare(ecosystem, fix, new) <= 0:
                    ids.append(vid)
            except (InvalidVersion, UnsupportedEcosystem):
                continue
        return ids

    return lookup


def collect_running_kernel(host: Host) -> str:
    """``uname -r`` of the running system (live only)."""
    from hostguard.vulns.restart import running_kernel

    return running_kernel(host)


def collect_deleted_mappings(host: Host) -> tuple[DeletedMapping, ...]:
    """Processes mapping libraries deleted from disk (live only)."""
    from hostguard.vulns.restart import deleted_mappings

    try:
        return tuple(deleted_mappings(host))
    except OSError as exc:
        raise HostError(f"/proc: {exc.strerror or exc}") from exc


def collect_web_apps(host: Host, servers: WebServers | None) -> tuple[WebApp, ...]:
    """Web applications in the document roots whose version is readable (no advisory feed covers them)."""
    from hostguard.vulns.webapps import web_applications

    try:
        return tuple(web_applications(host, servers)) if servers is not None else ()
    except (HostError, OSError):
        return ()   # the listing is a courtesy: it never costs the package findings


VULNS_INVENTORY: Fact[Inventory] = Fact("vulns_inventory", collect_vulns_inventory, inputs=(config_input("vulns"),))
VULNS_MATCHED: Fact[Matched] = Fact("vulns_matched", collect_matched,
                                    inputs=(VULNS_INVENTORY, config_input("vulns"), STATE.best_effort))
PENDING: Fact[PendingResult] = Fact("pending_updates", collect_pending,
                                     inputs=(config_input("vulns"), VULNS_MATCHED.best_effort))


def collect_pending_unreported(host: Host, pending: PendingResult, matched: Matched | None) -> tuple[Finding, ...]:
    """The pending security updates no ``vulns.package`` finding already upgrades (all of them when there are
    no advisories to match against: the package manager's word stands alone)."""
    from hostguard.vulns.pending import CHECK_ID
    from hostguard.vulns.scan import without_reported

    if pending.manager == "apk" and matched is None:
        raise Unavailable(SkipReason.TOOL_MISSING, "apk marks no update as a security one: the advisory copy does "
                                                   "(run `hostguard vulns update`)")
    waiting = [f for f in pending.findings if f.id == CHECK_ID]
    return tuple(without_reported(waiting, matched.findings if matched is not None else ()))


PENDING_UNREPORTED: Fact[tuple[Finding, ...]] = Fact("pending_updates_unreported", collect_pending_unreported,
                                                     inputs=(PENDING, VULNS_MATCHED.best_effort))
RUNNING_KERNEL: Fact[str] = Fact("running_kernel", collect_running_kernel)
DELETED_MAPPINGS: Fact[tuple[DeletedMapping, ...]] = Fact("deleted_library_mappings", collect_deleted_mappings)
WEB_APPS: Fact[tuple[WebApp, ...]] = Fact("web_applications", collect_web_apps, inputs=(WEB_SERVERS.best_effort,))



def collect_patch_view(host: Host, config_file: str | None, inventory: Inventory, apps: tuple[WebApp, ...],
                       matched: Matched | None) -> PatchView:
    """The virtual patches against what is installed, the offers to enable them in the config file the host's
    WAF reads (read fresh, through the host), and the package findings saying which patch covers them. A
    malformed patch file or an unreadable config is a problem said, never the package findings' loss."""
    from hostguard.vulns.virtual_patches import read_waf_config, target_path, view
    from hostguard.waf.vpatch import PatchError, catalogue

    problems = []
    try:
        patches = catalogue()
    except PatchError as exc:
        patches = None
        problems.append(f"virtual patches not loaded: {exc}")
    try:
        cfg = read_waf_config(host, target_path(host.live, config_file))
    except HostError as exc:
        cfg = None
        problems.append(f"whether virtual patches are enabled is unknown: {exc}")
    return view(patches, cfg, inventory, apps, matched.findings if matched is not None else (), problems)


VIRTUAL_PATCH_VIEW: Fact[PatchView] = Fact("virtual_patch_view", collect_patch_view,
                                           inputs=(CONFIG_FILE, VULNS_INVENTORY, WEB_APPS, VULNS_MATCHED.best_effort))

FAMILY = Family("vulns", __doc__ or "", VulnsConfig)


def _names(items: list[str]) -> str:
    return ", ".join(items[:SHOWN]) + (f" and {len(items) - SHOWN} more" if len(items) > SHOWN else "")


def coverage_gaps(inventory: Inventory, apps: tuple[WebApp, ...]) -> Iterator[tuple[SkipReason, str]]:
    """What the package findings could not speak of: packages not covered (by reason), web applications
    without an advisory feed, and inventory sources that could not be read."""
    release = inventory.release.ecosystem if inventory.release and inventory.release.ecosystem else "the distribution"
    by_reason: dict[str, list[str]] = {}
    for item in inventory.not_covered():
        if item.not_covered == DISTRO_MANAGED:
            continue   # matched as the distribution's package: covered, not a gap
        by_reason.setdefault(item.not_covered or "", []).append(f"{item.name} {item.version}")
    for reason, names in sorted(by_reason.items(), key=lambda kv: -len(kv[1])):
        yield (SkipReason.UNSUPPORTED, f"{len(names)} package{'s' if len(names) != 1 else ''} not matched against "
                                       f"{release}'s advisories "
                                       f"({reason}): {_names(names)}")
    if apps:
        yield (SkipReason.UNSUPPORTED, "web applications with no open advisory feed (follow their security "
                                       "releases): " + _names([f"{a.name} {a.version} at {a.path}" for a in apps]))
    for what, why in inventory.problems:
        yield SkipReason.ERROR, f"{what}: {why}"


@check(id="vulns.package", severity="high", summary="An installed package is affected by a published advisory",
       needs=(VULNS_MATCHED, VULNS_INVENTORY, WEB_APPS, VIRTUAL_PATCH_VIEW), tags=("T1190", "T1068"))
def vulnerable_package(ctx: Context) -> Iterator[Finding]:
    """Matches every installed package against the OSV advisories of its ecosystem, offline, in each
    ecosystem's own version order (dpkg's for Debian and Ubuntu, so a backported fix such as ``+deb12u1`` is
    seen as fixed; rpm's, apk's, PEP 440, SemVer, Maven): the distribution's packages by their source
    package, Python distributions per environment, npm and Composer packages per project. One finding per
    package and place, at the most severe advisory's severity (CVSS where the record has it), with the
    fixed version and the exact command of the package manager that upgrades it (run by ``hostguard fix``),
    or "no fix yet". Packages from third-party repositories and web applications without an advisory feed
    are listed in ``skipped``, by name. Where a WAF virtual patch covers the vulnerability at this version,
    the finding names it: how to enable it, or that it is enabled ("virtually patched until you upgrade");
    the upgrade step stays."""
    matched: Matched = ctx.fact(VULNS_MATCHED)
    for reason, detail in coverage_gaps(ctx.fact(VULNS_INVENTORY), ctx.fact(WEB_APPS)):
        ctx.skip(reason, detail)
    if matched.unreadable:
        ctx.skip(SkipReason.ERROR, f"{len(matched.unreadable)} OSV records unreadable: {_names(list(matched.unreadable))}")
    yield from ctx.fact(VIRTUAL_PATCH_VIEW).packages


@check(id="vulns.virtual_patch", severity="high", summary="A WAF virtual patch for a vulnerable installed application "
                                                         "is not enabled",
       needs=(VIRTUAL_PATCH_VIEW,), tags=("T1190",),
       references=("https://owasp.org/www-community/Virtual_Patching_Best_Practices",))
def virtual_patch(ctx: Context) -> Iterator[Finding]:
    """hostguard ships WAF virtual patches (``hostguard waf patches``): rules that refuse the exploit of one
    known vulnerability of a web application. Each patch's OSV-style ``affected`` block is matched, like an
    advisory, against the installed packages (Composer, npm, Python environments) and the WordPress cores of
    the document roots; a patch that covers something installed and is not in ``[waf] virtual_patches`` of
    the config file the host's WAF reads (the tree's ``/etc/hostguard/hostguard.toml`` under ``--root``) is a
    finding at the vulnerability's severity, naming what it covers and the advisories that report it. The fix
    (``hostguard fix``) adds the patch to that list, one line, with a backup and undo; the WAF front ends
    load it when restarted. The upgrade stays to do: the package's own finding keeps it."""
    found = ctx.fact(VIRTUAL_PATCH_VIEW)
    for problem in found.problems:
        ctx.skip(SkipReason.ERROR, problem)
    for detail in found.unplaced:
        ctx.skip(SkipReason.UNSUPPORTED, detail)
    yield from found.offers


@check(id="vulns.pending_update", severity="medium", summary="A security update is waiting to be installed",
       needs=(PENDING_UNREPORTED,), tags=("T1190",))
def pending_update(ctx: Context) -> Iterator[Finding]:
    """Asks the package manager, without refreshing its lists, which upgrades it has waiting from a security
    archive (apt: a simulated ``dist-upgrade``, so upgrades that need a new package are not hidden, and a
    newer point-release version that supersedes a security upload still counts). One finding per package
    with the command that installs exactly it; a package a ``vulns.package`` finding already upgrades is
    not repeated."""
    yield from ctx.fact(PENDING_UNREPORTED)


@check(id="vulns.package_lists_stale", severity="low", summary="The package lists are too old to show waiting updates",
       needs=(PENDING,), tags=("T1190",))
def package_lists_stale(ctx: Context) -> Iterator[Finding]:
    """The package manager's lists (apt: ``/var/lib/apt/lists``) were last refreshed more than
    ``[vulns] max_list_age_days`` ago, or never: updates published since are unknown to it and to
    ``vulns.pending_update``. hostguard never refreshes them itself; the fix is ``apt-get update``."""
    from hostguard.vulns.pending import LISTS_CHECK_ID

    yield from (f for f in ctx.fact(PENDING).findings if f.id == LISTS_CHECK_ID)


@check(id="vulns.kernel_not_running", severity="medium", summary="A newer kernel is installed but not running",
       needs=(RUNNING_KERNEL, DPKG), tags=("T1068",))
def kernel_not_running(ctx: Context) -> Iterator[Finding]:
    """The running kernel (``uname -r``) is older than the newest installed kernel image package: the
    upgrade's fixes are on disk but not in effect until a reboot into it."""
    from hostguard.vulns.restart import kernel_finding

    dpkg: DpkgDatabase = ctx.fact(DPKG)
    found = kernel_finding(ctx.fact(RUNNING_KERNEL), dpkg.packages)
    if found is not None:
        yield found


@check(id="vulns.deleted_library", severity="medium", summary="A service still runs libraries an upgrade replaced",
       needs=(DELETED_MAPPINGS,), tags=("T1068",))
def deleted_library(ctx: Context) -> Iterator[Finding]:
    """A running process maps a shared library that was deleted from disk under the library directories (an
    upgrade replaced it): patched, not restarted. One finding per systemd service (fixed by ``systemctl
    restart UNIT``), else per executable."""
    from hostguard.vulns.restart import deleted_library_findings

    yield from deleted_library_findings(ctx.fact(DELETED_MAPPINGS))
