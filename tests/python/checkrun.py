"""Runs a list of check functions the way every client script reports them:
one `ok <name>` or `FAIL <name>` line (plus traceback) each, then a summary;
returns the process exit status (1 if any check failed)."""
import sys
import traceback


def run_checks(checks, label):
    failed = []
    for check in checks:
        try:
            check()
        except Exception:
            failed.append(check.__name__)
            print(f"FAIL {check.__name__}")
            traceback.print_exc(file=sys.stdout)
        else:
            print(f"ok   {check.__name__}")
    print(f"{label}: {len(checks) - len(failed)} ok, {len(failed)} failing")
    if failed:
        print("failing: " + ", ".join(failed))
    return 1 if failed else 0
