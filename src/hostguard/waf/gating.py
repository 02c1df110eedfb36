"""How generated rules put a group of rules behind a gate (``data/waf/rules/REQUEST-19900-REQUEST-TEXT.conf``
says why gates are sound and why they have this shape): a rule that finds what the group needs jumps into it,
else an action jumps past it; inside, a rule that never matches clears MATCHED_VARS, which the gate's match
filled (libmodsecurity clears it only when a rule fails) and a chain in the group would read. hostguard's own
rule files write the same shape by hand."""

from __future__ import annotations

__all__ = ["IDS_PER_GATE", "behind_gate"]

IDS_PER_GATE = 3   # the gate rule, the skipping action, the clearing rule: first_id, first_id + 1, first_id + 2


def behind_gate(first_id: int, condition: str, name: str, body: str, transformations: str = "t:none") -> str:
    """``body`` (rules text) behind a gate whose rule is ``SecRule <condition>`` (variables and operator) with
    ``transformations``; the markers are ``RUN-HOSTGUARD-<name>`` and ``END-HOSTGUARD-<name>``."""
    return (f'SecRule {condition} "id:{first_id},phase:2,pass,nolog,{transformations},skipAfter:RUN-HOSTGUARD-{name}"\n'
            f'SecAction "id:{first_id + 1},phase:2,pass,nolog,t:none,skipAfter:END-HOSTGUARD-{name}"\n'
            f"SecMarker RUN-HOSTGUARD-{name}\n"
            f'SecRule REQUEST_METHOD "@rx \\A\\z" "id:{first_id + 2},phase:2,pass,nolog,t:none"\n'
            f"{body.rstrip()}\nSecMarker END-HOSTGUARD-{name}\n")
