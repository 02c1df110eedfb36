"""The ``[detect]`` config section: every detector's threshold, window and group-by, with its default.

The detectors are not check families, so no ``Family`` declares this section; ``hostguard logons`` loads the
configuration with it added to the registry's schema (:func:`schema`). The field defaults *are* the
documented defaults (docs/logons.md lists them), as for every section. Windows are seconds: the config layer
type-checks and range-checks plain numbers, and ``config show`` prints them as they are written.
"""

from __future__ import annotations

from dataclasses import dataclass

from hostguard.config import setting

BASELINE_DIMENSIONS = ("ip", "country", "hour", "account")


@dataclass(frozen=True)
class BruteForceConfig:
    """[detect.brute_force]: failures (and probes) from one source, grouped per address (IPv6 per prefix)."""

    fast_failures: int = setting(10, "Failed attempts from one source within fast_window that make a brute force.",
                                 min=2)
    fast_window: int = setting(300, "Seconds of the fast brute-force window.", min=1)
    slow_failures: int = setting(40, "Failed attempts from one source within slow_window that make a slow brute "
                                     "force (a bot keeping under the fast threshold).", min=2)
    slow_window: int = setting(6 * 3600, "Seconds of the slow brute-force window.", min=1)
    count_probes: bool = setting(True, "Count pre-authentication probes (no identification string, no common "
                                       "algorithm) as attempts of their source.")
    ipv6_prefix: int = setting(64, "IPv6 sources are grouped (and blocked) per network of this prefix length: "
                                   "one client owns a /64 and changes addresses inside it.", min=16, max=128)
    block_for: int = setting(3600, "Seconds the remediation's block step asks for.", min=60)


@dataclass(frozen=True)
class DistributedConfig:
    """[detect.distributed]: failures against one account (per service) from many sources."""

    failures: int = setting(20, "Failed attempts against one account within window.", min=2)
    sources: int = setting(5, "Distinct sources those failures must come from.", min=2)
    window: int = setting(3600, "Seconds of the window.", min=1)


@dataclass(frozen=True)
class SuccessAfterConfig:
    """[detect.success_after]: a success that follows repeated failures (of its source, or of its account)."""

    failures: int = setting(5, "Failures of the same source within window before a success that raise the alert "
                               "(also the failures an account must have had).", min=1)
    account_sources: int = setting(5, "Distinct failing sources an account must have had within window for a "
                                      "password success to that account from anywhere to raise the alert.", min=2)
    window: int = setting(3600, "Seconds before the success that are looked at.", min=1)


@dataclass(frozen=True)
class BaselineConfig:
    """[detect.baseline]: the approved logon baseline and how it is learned."""

    learning_hours: int = setting(24, "Hours after the first successful logon during which the baseline is "
                                      "learned (no unusual-logon alerts).", min=0)
    approve_after: int = setting(1, "Successful logons during learning that approve a value (an IP, a country, "
                                    "an hour, an account).", min=1)
    hour_slack: int = setting(1, "An hour of day is usual when an approved hour is this close (0: exact).",
                              min=0, max=11)
    dimensions: tuple[str, ...] = setting(BASELINE_DIMENSIONS, "Dimensions compared with the baseline: ip, "
                                                               "country, hour, account.")
    services: tuple[str, ...] = setting(("sshd", "login", "su", "vsftpd", "proftpd", "pure-ftpd"),
                                        "Services whose successful logons are compared with the baseline (mail "
                                        "and database clients log in at all hours from everywhere).")

    def __post_init__(self) -> None:
        unknown = sorted(set(self.dimensions) - set(BASELINE_DIMENSIONS))
        if unknown:
            raise ValueError(f"dimensions: unknown {', '.join(unknown)} (known: {', '.join(BASELINE_DIMENSIONS)})")


@dataclass(frozen=True)
class DetectConfig:
    """[detect]: thresholds, windows and group-by of the logon detectors."""

    brute_force: BruteForceConfig = setting(BruteForceConfig(), "Brute force from one source.")
    distributed: DistributedConfig = setting(DistributedConfig(), "Distributed brute force against one account.")
    success_after: SuccessAfterConfig = setting(SuccessAfterConfig(), "Success after brute force.")
    baseline: BaselineConfig = setting(BaselineConfig(), "Unusual logons against the approved baseline.")
    probe_slack: int = setting(10, "Seconds around a recorded hostguard probe session within which loopback or "
                                   "socket failures of its service and account are hostguard's own.", min=0)

    def longest_window(self) -> int:
        """Seconds of history any detector looks back (how far windows are rebuilt from the store)."""
        return max(self.brute_force.fast_window, self.brute_force.slow_window, self.distributed.window,
                   self.success_after.window)


def schema(base: dict[str, type]) -> dict[str, type]:
    """``base`` (the registry's sections) with ``[detect]`` added."""
    return {**base, "detect": DetectConfig}
