"""
How the pages for people look and behave: the style sheet, the one small
script (the copy button), both inline, and the Content-Security-Policy that
allows them and nothing else.
"""

import base64
import hashlib

STYLE = """
:root { color-scheme: light dark; --fg: #1f2328; --bg: #ffffff; --muted: #59636e;
  --line: #d1d9e0; --accent: #0969da; --panel: #f6f8fa; --warn: #9a6700; }
@media (prefers-color-scheme: dark) {
  :root { --fg: #e6edf3; --bg: #0d1117; --muted: #9198a1; --line: #3d444d;
    --accent: #4493f8; --panel: #151b23; --warn: #d29922; } }
* { box-sizing: border-box; }
body { margin: 0; font: 16px/1.5 system-ui, sans-serif; color: var(--fg); background: var(--bg); }
header, main, footer { max-width: 60rem; margin: 0 auto; padding: 0.75rem 1rem; }
header { border-bottom: 1px solid var(--line); display: flex; flex-wrap: wrap; gap: 0.5rem 1rem;
  align-items: center; justify-content: space-between; }
header a.brand { font-weight: 600; font-size: 1.1rem; }
a { color: var(--accent); }
a:focus-visible, button:focus-visible, input:focus-visible { outline: 3px solid var(--accent);
  outline-offset: 2px; }
form.search { display: flex; gap: 0.5rem; flex: 1 1 12rem; max-width: 30rem; min-width: 0; }
.sr-only { position: absolute; width: 1px; height: 1px; overflow: hidden; clip: rect(0 0 0 0);
  white-space: nowrap; }
form.search input { flex: 1; min-width: 0; padding: 0.4rem 0.6rem; font: inherit;
  color: inherit; background: var(--panel); border: 1px solid var(--line); border-radius: 6px; }
button { font: inherit; padding: 0.4rem 0.8rem; border: 1px solid var(--line); border-radius: 6px;
  background: var(--panel); color: inherit; cursor: pointer; }
h1 { font-size: 1.6rem; margin: 0.5rem 0; overflow-wrap: anywhere; }
h2 { font-size: 1.2rem; margin: 1.5rem 0 0.5rem; }
.muted { color: var(--muted); }
.yanked { color: var(--warn); }
.status { border-left: 3px solid var(--warn); padding-left: .6em; }
ul.projects { list-style: none; padding: 0; margin: 0; }
ul.projects li { padding: 0.6rem 0; border-bottom: 1px solid var(--line); overflow-wrap: anywhere; }
pre, code { font-family: ui-monospace, monospace; font-size: 0.9em; }
pre { background: var(--panel); padding: 0.6rem; border-radius: 6px; overflow-x: auto;
  white-space: pre-wrap; overflow-wrap: anywhere; }
.install { display: flex; gap: 0.5rem; align-items: stretch; flex-wrap: wrap; }
.install pre { margin: 0; flex: 1 1 14rem; }
.table { overflow-x: auto; max-width: 100%; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: 0.35rem 0.5rem; border-bottom: 1px solid var(--line);
  vertical-align: top; }
/* main's overflow-wrap: anywhere would let a table's automatic layout squeeze
   a column to one letter ("whee/l"): in tables a word is broken only when it
   is longer than the box, and short cells keep to one line. */
.table th, .table td { overflow-wrap: break-word; }
.table th, td.kind, td.size { white-space: nowrap; }
td.file { overflow-wrap: anywhere; }
td time { white-space: nowrap; }
td.hash { font-family: ui-monospace, monospace; font-size: 0.8em; word-break: break-all;
  min-width: 12em; }
/* Where the page is as wide as it gets, the sha256 fits on one line: there
   it is easier to compare, and the file name wraps instead. */
@media (min-width: 60rem) { td.hash { white-space: nowrap; word-break: normal; } }
/* A phone has no room for four columns: each file becomes a block (its name,
   then type and size, then the sha256 across the whole width). */
@media (max-width: 40rem) {
  table.files, table.files tbody, table.files tr, table.files td { display: block; }
  table.files thead { position: absolute; width: 1px; height: 1px; overflow: hidden;
    clip: rect(0 0 0 0); }
  table.files tr { display: grid; grid-template-columns: auto 1fr; column-gap: 1rem;
    padding: 0.4rem 0; border-bottom: 1px solid var(--line); }
  table.files td { border: 0; padding: 0.1rem 0; min-width: 0; }
  table.files td.file, table.files td.hash { grid-column: 1 / -1; }
  table.files td.hash::before { content: "sha256 "; font-family: system-ui, sans-serif;
    color: var(--muted); }
}
dl.meta { display: grid; grid-template-columns: max-content 1fr; gap: 0.25rem 1rem; }
dl.meta dt { color: var(--muted); }
dl.meta dd { margin: 0; overflow-wrap: anywhere; }
main { overflow-wrap: anywhere; }
.description { border-top: 1px solid var(--line); margin-top: 1rem; }
.description h1 { font-size: 1.35rem; }
.description img { max-width: 100%; }
.description pre { white-space: pre; overflow-x: auto; }
.description table { display: block; overflow-x: auto; max-width: 100%; }
.description th, .description td { overflow-wrap: normal; }
.description blockquote { margin-left: 0; padding-left: 1rem; border-left: 3px solid var(--line);
  color: var(--muted); }
"""

# "Copied" only when the clipboard took it; otherwise (plain http to a host
# name is not a secure context, so there is no clipboard API) the text is
# selected for the person to copy.
COPY_SCRIPT = (
    "document.querySelectorAll('button[data-copy]').forEach(function(b){"
    "var say=function(m){b.textContent=m;setTimeout(function(){b.textContent='Copy';},2500);};"
    "b.addEventListener('click',function(){"
    "var e=document.getElementById(b.getAttribute('data-copy'));"
    "var select=function(){var r=document.createRange();r.selectNodeContents(e);"
    "var s=window.getSelection();s.removeAllRanges();s.addRange(r);say('Press Ctrl+C');};"
    "if(!window.isSecureContext||!navigator.clipboard){select();return;}"
    "navigator.clipboard.writeText(e.textContent).then(function(){say('Copied');},select);"
    "});});"
)
# The template escapes text, script included: the script must need none.
assert not set("<>&") & set(COPY_SCRIPT)
_SCRIPT_HASH = base64.b64encode(hashlib.sha256(COPY_SCRIPT.encode()).digest()).decode()
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
    f"script-src 'sha256-{_SCRIPT_HASH}'; form-action 'self'; base-uri 'none'; "
    "frame-ancestors 'none'")
