#!/usr/bin/env python3
"""Prints one line counting the GoogleTest results of a ctest run: ctest runs each suite as a
few shards (tests/CMakeLists.txt), so its own summary counts shards; every shard writes a
GoogleTest XML report into the folder given as the argument, and this adds them up."""
import glob
import os
import sys
import xml.etree.ElementTree as ET


def main() -> int:
    folder = sys.argv[1] if len(sys.argv) > 1 else "build/test-results"
    reports = sorted(glob.glob(os.path.join(folder, "*.xml")))
    if not reports:
        print(f"no GoogleTest reports in {folder}")
        return 1
    passed = failed = skipped = 0
    failures = []
    for path in reports:
        for case in ET.parse(path).getroot().iter("testcase"):
            if case.get("status") == "notrun":
                continue  # disabled
            name = f"{case.get('classname')}.{case.get('name')}"
            if case.find("failure") is not None:
                failed += 1
                failures.append(name)
            elif case.get("result") == "skipped" or case.find("skipped") is not None:
                skipped += 1
            else:
                passed += 1
    total = passed + failed + skipped
    line = (f"{total} GoogleTest tests in {len(reports)} shards: {passed} passed, "
            f"{failed} failed, {skipped} skipped")
    if failures:
        line += " (failed: " + ", ".join(failures[:10]) + (", ..." if len(failures) > 10 else "") + ")"
    print(line)
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
