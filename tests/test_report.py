import base64
import re

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from cryofm.report import Report, versions  # noqa: E402


def test_report_html_is_self_contained_and_md_links_pngs(tmp_path):
    rep = Report("Probe results", "tiny run")
    rep.heading("Symmetry")
    rep.table([{"task": "symmetry", "ID": 0.91234, "OOD": float("nan")}], caption="accuracy")
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    rep.figure(fig, "curve", caption="a line")
    html_path, md_path = rep.write(tmp_path)
    html = html_path.read_text()
    png = (tmp_path / "figures" / "curve.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    # the PNG is embedded, byte for byte, and nothing is loaded from elsewhere
    b64 = re.search(r"data:image/png;base64,([A-Za-z0-9+/=]+)", html).group(1)
    assert base64.b64decode(b64) == png
    assert "src='http" not in html and "<td>0.912</td>" in html and "<td>–</td>" in html
    md = md_path.read_text()
    assert "![curve](figures/curve.png)" in md and "| symmetry | 0.912 | – |" in md


def test_versions_lists_core_packages():
    v = versions()
    assert v["torch"] != "–" and v["timm"] != "–" and v["python"].count(".") == 2
