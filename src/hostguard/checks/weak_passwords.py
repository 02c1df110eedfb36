"""Weak passwords of system accounts: /etc/shadow hashes tried against common and derived guesses."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

from hostguard.engine.context import Context
from hostguard.engine.registry import check
from hostguard.findings import Finding, SkipReason
from hostguard.host.accounts import Accounts, Shadow
from hostguard.passwords.cracker import Target, crack
from hostguard.passwords.guesses import plan
from hostguard.passwords.verifiers import VerifierUnavailable, crypt_verifier

LOCKED = ("", "*", "!", "!!", "x")


@check(id="weak_passwords.system", family="weak_passwords", severity="high",
       title="System account with a guessable password",
       needs=("accounts", "shadow", "hostname", "wordlist"))
def system_accounts(ctx: Context) -> Iterator[Finding]:
    """Tries each password hash in /etc/shadow against the most common passwords and guesses made from the
    account and host names (always), then more common passwords by rank within the time budget, on every
    core. Every crypt(3) scheme Linux uses is supported through libxcrypt; a scheme this machine cannot
    compute (its known-answer self-test fails) leaves the account unchecked, never "strong". Locked
    accounts (``!``/``*``) cannot log in with a password and are not tried. A found password is never
    shown: the finding names the account and the kind of guess that matched."""
    accounts: Accounts = ctx.fact("accounts")
    shadow: Shadow = ctx.fact("shadow")
    cfg = ctx.config["weak_passwords"]
    try:
        verifier = crypt_verifier()
    except VerifierUnavailable as exc:
        ctx.skip(SkipReason.TOOL_MISSING, str(exc))
        return
    working = verifier.working_schemes()
    users = accounts.by_name()
    admin = set(ctx.config["accounts"]["admin_groups"])
    targets: list[Target] = []
    for entry in shadow.entries:
        if entry.hash in LOCKED or entry.hash.startswith("!") or entry.hash.startswith("*"):
            continue
        scheme = verifier.scheme(entry.hash)
        if scheme is None:
            ctx.skip(SkipReason.UNSUPPORTED, f"account '{entry.name}': unknown hash scheme "
                                             f"'{entry.hash[:4]}...' (unchecked)")
            continue
        if working.get(scheme) != "ok":
            ctx.skip(SkipReason.UNSUPPORTED, f"account '{entry.name}': {scheme}: {working.get(scheme)} (unchecked)")
            continue
        user = users.get(entry.name)
        first, rest = plan(entry.name, user.gecos if user else "", ctx.fact("hostname"), cfg["extra_words"],
                           cfg["floor"], ctx.fact("wordlist"))
        targets.append(Target(entry.name, entry.hash, first, rest))
    if not targets:
        return
    workers = cfg["workers"] or os.cpu_count() or 1
    deadline = time.monotonic() + cfg["budget_seconds"]
    crack(targets, verifier, deadline=deadline, workers=workers, progress=ctx.progress, cancel=ctx.cancel)
    for t in targets:
        user = users.get(t.account)
        privileged = t.account == "root" or (user is not None and (user.uid == 0 or admin & accounts.groups_of(user)))
        if t.found is not None:
            yield ctx.finding(
                f"account '{t.account}' has a guessable password ({t.found.source})",
                {"kind": "user", "user": t.account},
                severity="critical" if privileged else "high",
                evidence={"scheme": verifier.scheme(t.hashed), "matched": t.found.source,
                          "length": len(t.found.text), "tried": f"tried {t.tried} of {t.planned}"},
                remediation=f"`passwd {t.account}` now (12+ characters, not a dictionary word or a name); "
                            f"if the account needs no password login, `passwd -l {t.account}`.")
        elif t.budget_ran_out:
            ctx.skip(SkipReason.BUDGET, f"account '{t.account}': tried {t.tried} of {t.planned} guesses, "
                                        "none matched (raise weak_passwords.budget_seconds to try more)")
