"""A report written twice from one description: self-contained HTML (PNGs embedded as base64) and
Markdown (PNGs saved beside it under ``figures/``).

    rep = Report("Linear probes", "checkpoint runs/tiny")
    rep.heading("Symmetry")
    rep.table(rows, caption="accuracy (%)")
    rep.figure(fig, "bars", caption="...")
    rep.write(out_dir)            # -> out_dir/report.html, out_dir/report.md, out_dir/figures/*.png
"""

from __future__ import annotations

import base64
import html
import io
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryofm.utils import atomic

_CSS = """
body{font-family:-apple-system,Segoe UI,Roboto,Helvetica,Arial,sans-serif;max-width:1180px;margin:2em auto;
padding:0 1.2em;color:#1d2329;line-height:1.45}
h1{font-size:1.7em;margin-bottom:.1em}h2{margin-top:1.8em;border-bottom:1px solid #d8dee4;padding-bottom:.2em}
h3{margin-top:1.3em}.sub{color:#57606a;margin-top:0}
table{border-collapse:collapse;margin:.6em 0 1.2em;font-size:.92em}
th,td{border:1px solid #d0d7de;padding:.3em .65em;text-align:right}th{background:#f3f5f7}
td:first-child,th:first-child{text-align:left}caption{caption-side:top;text-align:left;color:#57606a;
padding:.2em 0}figure{margin:1em 0 1.6em}figure img{max-width:100%;border:1px solid #e1e4e8}
figcaption{color:#57606a;font-size:.9em}pre{background:#f6f8fa;padding:.8em;overflow-x:auto;font-size:.85em}
.grid{display:flex;flex-wrap:wrap;gap:12px}.grid figure{flex:1 1 340px;margin:0}
"""


def _fmt(v: Any, floatfmt: str) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if isinstance(v, float):
        return format(v, floatfmt)
    return str(v)


@dataclass
class _Figure:
    name: str
    data: bytes  # the encoded image: PNG, or JPEG when ext == "jpg"
    caption: str
    ext: str = "png"

    @property
    def mime(self) -> str:
        return "image/jpeg" if self.ext == "jpg" else "image/png"


def _photo(png: bytes, max_px: int, quality: int = 85) -> bytes:
    """A PNG as a JPEG at most ``max_px`` on its long side (for noisy, photo-like images)."""
    from PIL import Image

    im = Image.open(io.BytesIO(png))
    im = im.convert("RGB") if im.mode not in ("RGB", "L") else im
    im.thumbnail((max_px, max_px), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=quality, optimize=True)
    return buf.getvalue()


@dataclass
class Report:
    """An ordered list of blocks (headings, text, tables, figures, code) rendered to HTML and MD."""

    title: str
    subtitle: str = ""
    blocks: list[tuple[str, Any]] = field(default_factory=list)

    def heading(self, text: str, level: int = 2) -> None:
        """Section heading (level 2 or 3)."""
        self.blocks.append(("heading", (level, text)))

    def text(self, text: str) -> None:
        """A paragraph of plain text."""
        self.blocks.append(("text", text))

    def table(self, rows: Any, caption: str = "", floatfmt: str = ".3g") -> None:
        """A table from a list of dicts (columns from the first row's keys) or a pandas DataFrame."""
        if hasattr(rows, "to_dict"):
            rows = rows.to_dict(orient="records")
        rows = list(rows)
        cols: list[str] = []
        for r in rows:
            cols += [k for k in r if k not in cols]
        self.blocks.append(("table", (cols, rows, caption, floatfmt)))

    def kv(self, items: dict[str, Any], caption: str = "") -> None:
        """A two-column key / value table."""
        self.table([{"key": k, "value": v} for k, v in items.items()], caption, floatfmt=".4g")

    def figure(self, fig_or_png: Any, name: str, caption: str = "", dpi: int = 110,
               photo_px: int | None = None) -> None:
        """A matplotlib figure (closed after saving) or PNG bytes / PNG file path.

        ``photo_px``: store it as a JPEG at most that many pixels on its long side (micrographs,
        particle montages: noise does not compress as PNG and would make the HTML tens of MB).
        """
        if isinstance(fig_or_png, (bytes, bytearray)):
            png = bytes(fig_or_png)
        elif isinstance(fig_or_png, (str, Path)):
            png = Path(fig_or_png).read_bytes()
        else:
            import matplotlib.pyplot as plt

            buf = io.BytesIO()
            fig_or_png.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
            plt.close(fig_or_png)
            png = buf.getvalue()
        if photo_px:
            self.blocks.append(("figure", [_Figure(name, _photo(png, photo_px), caption, "jpg")]))
            return
        self.blocks.append(("figure", [_Figure(name, png, caption)]))

    def figures(self, items: list[tuple[Any, str, str]], photo_px: int | None = None) -> None:
        """Several figures side by side: a list of (figure or png, name, caption); none: nothing."""
        if not items:
            return
        start = len(self.blocks)
        for fig, name, cap in items:
            self.figure(fig, name, cap, photo_px=photo_px)
        figs = [f for _, group in self.blocks[start:] for f in group]
        del self.blocks[start:]
        self.blocks.append(("figure", figs))

    def code(self, text: str) -> None:
        """Preformatted text (configs, command lines)."""
        self.blocks.append(("code", text))

    # -- rendering ---------------------------------------------------------------------------
    def to_html(self) -> str:
        """Self-contained HTML."""
        out = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(self.title)}</title>"
               f"<style>{_CSS}</style></head><body><h1>{html.escape(self.title)}</h1>"]
        if self.subtitle:
            out.append(f"<p class='sub'>{html.escape(self.subtitle)}</p>")
        for kind, payload in self.blocks:
            if kind == "heading":
                level, text = payload
                out.append(f"<h{level}>{html.escape(text)}</h{level}>")
            elif kind == "text":
                out.append(f"<p>{html.escape(payload)}</p>")
            elif kind == "code":
                out.append(f"<pre>{html.escape(payload)}</pre>")
            elif kind == "table":
                cols, rows, caption, ff = payload
                cap = f"<caption>{html.escape(caption)}</caption>" if caption else ""
                head = "".join(f"<th>{html.escape(str(c))}</th>" for c in cols)
                body = "".join("<tr>" + "".join(f"<td>{html.escape(_fmt(r.get(c), ff))}</td>" for c in cols)
                               + "</tr>" for r in rows)
                out.append(f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
            elif kind == "figure":
                items = []
                for f in payload:
                    b64 = base64.b64encode(f.data).decode("ascii")
                    img = f"<img alt='{html.escape(f.name)}' src='data:{f.mime};base64,{b64}'>"
                    items.append(f"<figure>{img}<figcaption>{html.escape(f.caption)}</figcaption></figure>")
                out.append("<div class='grid'>" + "".join(items) + "</div>" if len(items) > 1 else items[0])
        out.append("</body></html>")
        return "\n".join(out)

    def to_markdown(self, figure_dir: str = "figures") -> str:
        """Markdown that links the PNGs written under ``figure_dir``."""
        out = [f"# {self.title}", ""]
        if self.subtitle:
            out += [f"_{self.subtitle}_", ""]
        for kind, payload in self.blocks:
            if kind == "heading":
                level, text = payload
                out += ["#" * level + " " + text, ""]
            elif kind == "text":
                out += [payload, ""]
            elif kind == "code":
                out += ["```", payload, "```", ""]
            elif kind == "table":
                cols, rows, caption, ff = payload
                if caption:
                    out += [f"*{caption}*", ""]
                out.append("| " + " | ".join(map(str, cols)) + " |")
                out.append("|" + "---|" * len(cols))
                out += ["| " + " | ".join(_fmt(r.get(c), ff) for c in cols) + " |" for r in rows]
                out.append("")
            elif kind == "figure":
                for f in payload:
                    cap = f"*{f.caption}*" if f.caption else ""
                    out += [f"![{f.name}]({figure_dir}/{f.name}.{f.ext})", "", cap, ""]
        return "\n".join(out)

    def write(self, out_dir: str | Path, stem: str = "report") -> tuple[Path, Path]:
        """Write ``<stem>.html``, ``<stem>.md`` and ``figures/<name>.{png,jpg}`` atomically."""
        out_dir = Path(out_dir)
        for kind, payload in self.blocks:
            if kind == "figure":
                for f in payload:
                    atomic.write_bytes(out_dir / "figures" / f"{f.name}.{f.ext}", f.data)
        html_path, md_path = out_dir / f"{stem}.html", out_dir / f"{stem}.md"
        atomic.write_text(html_path, self.to_html())
        atomic.write_text(md_path, self.to_markdown())
        return html_path, md_path
