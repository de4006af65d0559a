"""Reads focus-validator's console report and decides: every rule the dataset
fails is printed, and the exit status is 1 if there is any.

One thing is not counted as a failure of the dataset: a rule that is one branch
of an OR whose other branch held, when the OR itself passed. focus-validator
2.2.1 reports such a branch as failed although its parent passed: InvoiceId's
nullability (InvoiceId-C-003-C) is "InvoiceId-C-004-C (null) OR InvoiceId-C-005-C
(not null)", with no condition on either, so any dataset with the InvoiceId
column shows one of the two as failed.

usage: focus_verdict.py REPORT MODEL_JSON
"""

import json
import re
import sys

LINE = re.compile(r"^\S+\s+([A-Za-z0-9-]+): (PASS|FAIL|SKIPPED)\b")
TOTAL = re.compile(r"^Total: (\d+) \| Pass: (\d+) \| Fail: (\d+) \| Skipped: (\d+)")


def or_children(model):
    """Rule ID -> the OR rules that reference it as a branch."""
    parents = {}
    for rule_id, rule in model["ModelRules"].items():
        req = rule.get("ValidationCriteria", {}).get("Requirement", {})
        if req.get("CheckFunction") != "OR":
            continue
        for item in req.get("Items", []):
            if item.get("CheckFunction") == "CheckModelRule":
                parents.setdefault(item["ModelRuleId"], []).append(rule_id)
    return parents


def main(report_path, model_path):
    with open(model_path) as f:
        parents = or_children(json.load(f))
    status, totals = {}, None
    with open(report_path, encoding="utf-8") as f:
        for line in f:
            m = LINE.match(line)
            if m:
                status[m.group(1)] = m.group(2)
            t = TOTAL.match(line)
            if t:
                totals = tuple(int(g) for g in t.groups())
    if totals is None:
        print("focus-validator printed no summary line: it did not validate")
        return 2
    failed = sorted(r for r, s in status.items() if s == "FAIL")
    branches = [
        r for r in failed
        if any(status.get(p) == "PASS" for p in parents.get(r, []))
    ]
    real = [r for r in failed if r not in branches]
    total, passed, fail, skipped = totals
    print(f"focus-validator: Total: {total} | Pass: {passed} | Fail: {fail} | Skipped: {skipped}")
    for r in branches:
        held = [p for p in parents[r] if status.get(p) == "PASS"]
        print(f"  not a failure: {r} is the unchosen branch of {', '.join(held)}, which passed")
    for r in real:
        print(f"  FAILED: {r}")
    print(f"failed rules: {len(real)}")
    if passed == 0:
        print("no rule passed: the dataset was not checked")
        return 1
    return 1 if real else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
