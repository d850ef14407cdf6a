"""Results as JUnit XML (one testsuite per file, one testcase per target) and failure text."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from . import Result


# what XML 1.0 cannot hold (C0 controls but tab/newline/CR, lone surrogates, U+FFFE/U+FFFF), and the
# noncharacters and C1 controls it discourages: names and messages come from untrusted graph files
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff\ufdd0-\ufdef\ufffe\uffff]")


def xml_text(text: str) -> str:
    """`text` with every character XML 1.0 cannot carry (or discourages) as a visible `\\xNN`/`\\uNNNN`."""
    return _NOT_XML.sub(lambda m: f"\\x{ord(m.group()):02x}" if ord(m.group()) < 0x100 else f"\\u{ord(m.group()):04x}",
                        text)


def junit_xml(results: list[Result]) -> str:
    """JUnit XML: one testsuite per file, one testcase per target, failures with their message.
    Every name and message goes through `xml_text`, so the document stays well-formed."""
    import xml.etree.ElementTree as ET

    root = ET.Element("testsuites", name="gtool grad-check", tests=str(len(results)),
                      failures=str(sum(not r.passed for r in results)),
                      time=f"{sum(r.seconds for r in results):.6f}")
    for path in dict.fromkeys(r.path for r in results):
        mine = [r for r in results if r.path == path]
        suite = ET.SubElement(root, "testsuite", name=xml_text(str(path)), tests=str(len(mine)),
                              failures=str(sum(not r.passed for r in mine)), time=f"{sum(r.seconds for r in mine):.6f}")
        for r in mine:
            case = ET.SubElement(suite, "testcase", classname=xml_text(str(path)), name=xml_text(r.wrt or "(graph)"),
                                 time=f"{r.seconds:.6f}")
            if not r.passed:
                failure = ET.SubElement(case, "failure", type="grad-check", message=xml_text(failure_line(r)))
                failure.text = xml_text("\n".join(failure_details(r)))
            if r.kinks:
                ET.SubElement(case, "system-out").text = xml_text(f"{r.kinks} entries at a kink: {r.kink_at}")
    ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def failure_line(r: Result) -> str:
    """One line saying how a result failed."""
    if r.diagnostics and r.mode == "invalid":
        return f"invalid graph: {r.diagnostics[0].message}"
    if r.max_abs_error is None:
        return r.message or "failed"
    if r.kink_failure:
        return (f"{r.kinks} entr{'y' if r.kinks == 1 else 'ies'} at a kink (left and right differences disagree) at "
                f"{', '.join(map(str, r.kink_at))}{' ...' if r.kinks > len(r.kink_at) else ''}: --strict counts them")
    where = f" at {r.index}" if r.index is not None else ""
    where += f" (direction {r.direction})" if r.direction is not None else ""
    text = (f"max abs error {r.max_abs_error:.3g}, max rel error {r.max_rel_error:.3g}{where}: "
            f"analytic {r.analytic:.8g}, numeric {r.numeric:.8g}")
    return text + (f"; {r.message}" if r.message else "")


def failure_details(r: Result) -> list[str]:
    """The lines under a failure: the culprit, then any diagnostics."""
    out = []
    if r.culprit is not None:
        out.append(r.culprit.text())
    out.extend(d.format() for d in r.diagnostics)
    return out
