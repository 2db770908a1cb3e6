"""The script and style bundles: our own files (and the unminified SSE extension) go out
minified (rjsmin, rcssmin); the vendored minified htmx as it is."""

from __future__ import annotations

from pathlib import Path

from app.assets import BUNDLES, COMPACTED, compact

STATIC = Path(__file__).resolve().parent.parent / "static"


def test_our_styles_are_minified_with_their_meaning_kept():
    source = b"""/* a comment */
  a { b: c; }
/* a comment
   over two lines */
d  >  e { f: "/* not a comment */"; }
"""
    assert compact("css/app.css", source) == b'a{b:c}d>e{f:"/* not a comment */"}\n'


def test_our_scripts_are_minified_with_their_meaning_kept():
    source = b"""// a script comment
  call(); // a comment after code
/**
 * a block comment
 */
var url = "http://example.com/*not a comment*/";
"""
    assert compact("js/app.js", source) == b'call();var url="http://example.com/*not a comment*/";\n'


def test_vendored_minified_files_are_served_as_they_are():
    data = b"  /* keep */\n// keep\n"
    assert compact("vendor/htmx-2.0.11.min.js", data) == data


def test_the_script_bundle_is_its_parts_compacted(demo_client):
    response = demo_client.get("/static/bundle/app.js")
    assert response.status_code == 200
    parts = [compact(name, (STATIC / name).read_bytes()) for name in BUNDLES["bundle/app.js"]]
    assert response.get_data() == b"\n;\n".join(parts)
    assert set(COMPACTED) <= {name for bundle in BUNDLES.values() for name in bundle}
