"""Open every page of the built book in a real (headless) Chromium and fail on any defect.

Usage (``make browser`` runs it after the strict build)::

    .venv/bin/python tools/browser/check_site.py [_build/html] [--screenshots DIR]

The site is served by Python's ``http.server`` (the server of ``python -m
http.server``, run in a thread) on 127.0.0.1 at a free port, as a host would serve
it.  Chromium resolves no other host name, so the check sees the book as a reader
with no network (or a blocked CDN) sees it.  A page fails on

* a console error or an uncaught JavaScript exception (console warnings are
  printed as notes, not failed);
* a failed request or an HTTP status of 400 or more;
* a request to a host that is not the local server (a CDN script, a web font),
  or a third-party script or stylesheet named in the page (``<script src>``, a
  URL inside an inline script, ``<link rel=stylesheet|preload|icon ...>``) that
  it would load later, such as Thebe's script behind a button;
* an image that did not load;
* a formula MathJax did not typeset: an element of class ``math`` without an
  ``mjx-container``, a MathJax error (``mjx-merror``, or an undefined macro
  that MathJax shows in red), or TeX source (``\\(``,
  ``\\[``, ``$$``, ``\\frac`` ...) left in the page's text outside code;
* an internal link (``<a href>``) to a page or file that does not exist, or to
  an ``#anchor`` that the target page does not define.

Screenshots of a few pages are kept in ``_build/screenshots/`` for the record.
Chromium comes from Debian (``apt-get install chromium``; ``playwright install``
downloads a browser from a CDN, which is not available on the book's machines),
driven by the Playwright package pinned in ``requirements.txt``.
"""
from __future__ import annotations

import argparse
import functools
import http.server
import re
import sys
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urldefrag, urljoin, urlsplit

from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import sync_playwright

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-default-apps",
    "--disable-extensions",
    "--disable-sync",
    "--no-first-run",
    "--no-default-browser-check",
    "--metrics-recording-only",
    # no DNS: every host but the local server is unreachable, as on a plane
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
]

# Pages photographed for the record (those that exist are taken).
SCREENSHOT_PAGES = [
    "intro.html",
    "chapters/01_why_normalize.html",
    "chapters/02_batch_norm.html",
    "chapters/05_group_norm.html",
    "chapters/06_comparison.html",
    "api.html",
    "glossary.html",
    "bibliography.html",
]

QUIET_MS = 150  # a page is done when no request has been in flight for this long
REFRESH = re.compile(r'<meta[^>]+http-equiv="refresh"[^>]+url=([^"]+)"', re.I)

# Wait for MathJax (if the page loads it) to finish its first typesetting pass,
# then make every lazy image load, and report what the page shows.
INSPECT_JS = r"""
async () => {
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  const out = {mathjax: "none", untypeset: [], merrors: [], rawtex: [], badimages: [],
               nmath: 0, nimages: 0, foreign: [], links: [], ids: []};
  const hasMath = document.querySelector(".math") !== null;
  if (hasMath && !document.querySelector('script[src*="mathjax"]')) out.mathjax = "not loaded";
  else if (document.querySelector('script[src*="mathjax"]')) {
    const t0 = Date.now();
    while (!(window.MathJax && MathJax.startup && MathJax.startup.promise)) {
      if (Date.now() - t0 > 20000) { out.mathjax = "not loaded"; break; }
      await sleep(25);
    }
    if (out.mathjax === "none") {
      await MathJax.startup.promise;
      out.mathjax = MathJax.version || "loaded";
    }
  }
  // formulas: every .math element must hold a typeset mjx-container
  for (const el of document.querySelectorAll(".math")) {
    if (!el.querySelector("mjx-container")) out.untypeset.push(el.textContent.trim().slice(0, 80));
  }
  for (const el of document.querySelectorAll("mjx-merror")) {
    out.merrors.push((el.getAttribute("data-mjx-error") || el.textContent).slice(0, 120));
  }
  // an undefined macro is typeset as red text (MathJax's noundefined package)
  for (const el of document.querySelectorAll('mjx-assistive-mml mtext[mathcolor="red"]')) {
    if (el.textContent.startsWith("\\")) out.merrors.push(`undefined macro ${el.textContent}`);
  }
  // TeX left as text outside code, scripts and typeset math
  const skip = new Set(["PRE", "CODE", "SCRIPT", "STYLE", "TEXTAREA", "MJX-CONTAINER", "KBD", "SAMP"]);
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT, {
    acceptNode(node) {
      for (let p = node.parentElement; p; p = p.parentElement) {
        if (skip.has(p.tagName)) return NodeFilter.FILTER_REJECT;
      }
      return NodeFilter.FILTER_ACCEPT;
    },
  });
  const tex = /\\\(|\\\)|\\\[|\\\]|\$\$|\\(frac|sqrt|sum|mathbb|mathrm|begin|end|hat|epsilon|sigma|mu)\b|\$[^$\n]*[\\^_][^$\n]*\$/;
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    const m = n.nodeValue.match(tex);
    if (m) {
      const i = Math.max(0, m.index - 30);
      out.rawtex.push(n.nodeValue.slice(i, m.index + 50).replace(/\s+/g, " ").trim());
    }
  }
  // images: force lazy ones to load, then wait for each to settle
  const imgs = Array.from(document.images);
  imgs.forEach((img) => { img.loading = "eager"; });
  await Promise.all(imgs.map((img) => img.complete ? null :
    new Promise((r) => { img.addEventListener("load", r); img.addEventListener("error", r);
                         setTimeout(r, 10000); })));
  for (const img of imgs) {
    if (!img.complete || img.naturalWidth === 0) out.badimages.push(img.getAttribute("src"));
  }
  // third-party code the page would fetch later (a button's script, a preconnect)
  const foreign = (u) => /^(https?:|wss?:)?\/\//i.test(u) && new URL(u, location.href).host !== location.host;
  for (const sc of document.scripts) {
    if (sc.src && foreign(sc.getAttribute("src"))) out.foreign.push(`script src ${sc.src}`);
    for (const u of (sc.src ? [] : sc.textContent.match(/(https?:|wss?:)\/\/[^\s"'`<>)]+/g) || [])) {
      if (foreign(u)) out.foreign.push(`script text names ${u}`);
    }
  }
  for (const l of document.querySelectorAll("link[href]")) {
    const rel = (l.getAttribute("rel") || "").toLowerCase();
    if (/stylesheet|preload|prefetch|preconnect|dns-prefetch|icon|manifest/.test(rel) && foreign(l.getAttribute("href"))) {
      out.foreign.push(`link rel=${rel} ${l.href}`);
    }
  }
  out.nmath = document.querySelectorAll("mjx-container").length;
  out.nimages = imgs.length;
  out.links = Array.from(document.querySelectorAll("a[href]"), (a) => a.href);
  out.ids = Array.from(document.querySelectorAll("[id]"), (e) => e.id)
    .concat(Array.from(document.querySelectorAll("a[name]"), (e) => e.getAttribute("name")));
  return out;
}
"""


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        pass


def serve(root: Path) -> tuple[http.server.ThreadingHTTPServer, str]:
    """Serve ``root`` on 127.0.0.1 at a free port; return the server and its base URL."""
    handler = functools.partial(QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"


def site_pages(root: Path) -> list[str]:
    """Every HTML page of the site (relative paths), assets excluded."""
    skip = ("_static/", "_sources/", "_images/", "_downloads/")
    pages = [p.relative_to(root).as_posix() for p in sorted(root.rglob("*.html"))]
    return [p for p in pages if not p.startswith(skip)]


def local_target(root: Path, path: str) -> Path | None:
    """The file a local URL path resolves to, or None if there is none."""
    rel = unquote(path).lstrip("/")
    target = root / rel
    if rel == "" or target.is_dir():
        target = target / "index.html"
    return target if target.is_file() else None


@dataclass
class Report:
    """What the browser saw: the pages, and the problems found on each."""

    pages: list[str]
    problems: dict[str, list[str]]
    n_links: int = 0
    n_math: int = 0
    n_images: int = 0
    notes: dict[str, list[str]] = field(default_factory=dict)  # console warnings: shown, not failed
    seconds: float = 0.0

    @property
    def bad(self) -> dict[str, list[str]]:
        return {k: list(dict.fromkeys(v)) for k, v in self.problems.items() if v}


def inspect_site(
    root: Path, shots: Path, chromium: str, timeout_ms: int = 30000, verbose: bool = False
) -> Report:
    """Open every page of the site at ``root`` in Chromium; return what went wrong where."""
    root = root.resolve()
    pages = site_pages(root)
    server, base = serve(root)
    host = urlsplit(base).netloc
    problems: dict[str, list[str]] = defaultdict(list)
    ids_of: dict[str, set[str]] = {}
    links_of: dict[str, list[str]] = {}
    notes: dict[str, list[str]] = defaultdict(list)
    report = Report(pages, problems, notes=notes)
    shots.mkdir(parents=True, exist_ok=True)
    for old in shots.glob("*.png"):
        old.unlink()
    t_start = time.perf_counter()
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
            context = browser.new_context(viewport={"width": 1280, "height": 900}, service_workers="block")

            current = {"page": "", "leaving": False}
            page = context.new_page()
            # Chromium resolves no host but 127.0.0.1 (CHROMIUM_ARGS): a request
            # elsewhere fails at once, as it would for a reader with no network;
            # it is recorded here as the defect it is.
            inflight: set = set()

            def on_request(r):
                inflight.add(r)
                parts = urlsplit(r.url)
                if parts.scheme in ("http", "https", "ws", "wss") and parts.netloc != host:
                    problems[current["page"]].append(f"request to a non-local host: {r.url}")

            def on_failed(r):
                inflight.discard(r)
                if current["leaving"] and r.failure == "net::ERR_ABORTED":
                    return  # cut short by the next navigation, not a defect of the page
                if urlsplit(r.url).netloc == host:  # non-local ones are reported above
                    problems[current["page"]].append(f"request failed: {r.url} ({r.failure})")

            page.on("request", on_request)
            page.on("requestfinished", lambda r: inflight.discard(r))
            page.on("requestfailed", on_failed)
            page.set_default_timeout(timeout_ms)
            page.on(
                "console",
                lambda m: (problems if m.type in ("error", "assert") else notes)[current["page"]].append(
                    f"console {m.type}: {m.text}" + (f" [{m.location['url']}]" if m.location.get("url") else "")
                )
                if m.type in ("error", "assert", "warning")
                else None,
            )
            page.on("pageerror", lambda e: problems[current["page"]].append(f"JavaScript exception: {e}"))
            page.on(
                "response",
                lambda r: problems[current["page"]].append(f"HTTP {r.status}: {r.url}")
                if r.status >= 400
                else None,
            )
            for rel in pages:
                current["leaving"] = True
                current["page"] = rel
                refresh = REFRESH.search((root / rel).read_text("utf8", "replace")[:2000])
                if refresh:  # a redirect page (index.html -> intro.html): it must arrive
                    dest = urljoin(base + rel, refresh.group(1))
                    page.goto(base + rel, wait_until="load")
                    try:
                        page.wait_for_url(dest, timeout=10000)
                    except PlaywrightError:
                        problems[rel].append(f"redirect to {dest} did not arrive (at {page.url})")
                    links_of[rel] = [dest]
                    continue
                t_page = time.perf_counter()
                page.goto(base + rel, wait_until="load")
                current["leaving"] = False
                info = page.evaluate(INSPECT_JS)
                # let every request the page started (fonts MathJax asked for) settle
                # (late ones too, like the favicon: it must stay quiet for QUIET_MS)
                t_wait = t_quiet = time.perf_counter()
                while time.perf_counter() - t_wait < timeout_ms / 1000:
                    if inflight:
                        t_quiet = time.perf_counter()
                    elif time.perf_counter() - t_quiet > QUIET_MS / 1000:
                        break
                    page.wait_for_timeout(20)
                if inflight:
                    problems[rel] += [f"request never finished: {r.url}" for r in inflight]
                    inflight.clear()
                out = problems[rel]
                if info["mathjax"] == "not loaded":
                    out.append("MathJax did not load")
                out += [f"formula not typeset: {t!r}" for t in info["untypeset"]]
                out += [f"MathJax error: {t!r}" for t in info["merrors"]]
                out += [f"TeX left as text: {t!r}" for t in info["rawtex"]]
                out += [f"image did not load: {s}" for s in info["badimages"]]
                out += [f"third-party resource in the page: {t}" for t in info["foreign"]]
                report.n_math += info["nmath"]
                report.n_images += info["nimages"]
                if verbose:
                    print(f"  {time.perf_counter() - t_page:5.2f} s  {rel}", flush=True)
                ids_of[rel] = set(info["ids"])
                links_of[rel] = info["links"]
                if rel in SCREENSHOT_PAGES:
                    name = rel.replace("/", "__").removesuffix(".html") + ".png"
                    page.screenshot(path=str(shots / name), full_page=True)
            browser.close()
    finally:
        server.shutdown()
        server.server_close()

    # internal links: the page or file must exist, and so must the anchor
    n_links = 0
    for rel, links in links_of.items():
        for href in links:
            parts = urlsplit(href)
            if parts.scheme not in ("http", "https") or parts.netloc != host:
                continue  # external links are links, not loads: not followed offline
            n_links += 1
            url, frag = urldefrag(href)
            target = local_target(root, urlsplit(url).path)
            if target is None:
                problems[rel].append(f"link to a missing page or file: {href.removeprefix(base)}")
                continue
            frag = unquote(frag)
            if frag and target.suffix == ".html":
                trel = target.relative_to(root).as_posix()
                ids = ids_of.get(trel)
                if ids is None:  # a page outside the crawl: read its ids from the file
                    ids = set(re.findall(r'\b(?:id|name)="([^"]+)"', target.read_text("utf8", "replace")))
                    ids_of[trel] = ids
                if frag not in ids:
                    problems[rel].append(f"link to a missing anchor: {href.removeprefix(base)}")

    report.n_links = n_links
    report.seconds = time.perf_counter() - t_start
    return report


def check(root: Path, shots: Path, chromium: str, verbose: bool = False) -> int:
    """Inspect the site, print a report; 0 if no page has a problem, else 1 (2: no site)."""
    if not (root / "index.html").is_file():
        print(f"check_site: no built site at {root} (run `make book` first)", file=sys.stderr)
        return 2
    r = inspect_site(root, shots, chromium, verbose=verbose)
    print(
        f"check_site: {len(r.pages)} pages, {r.n_links} internal links, {r.n_math} typeset formulas, "
        f"{r.n_images} images, {len(list(shots.glob('*.png')))} screenshots in {shots} ({r.seconds:.1f} s)"
    )
    for rel, msgs in sorted(r.notes.items()):
        for m in dict.fromkeys(msgs):
            print(f"check_site: note on {rel}: {m}")
    bad = r.bad
    if not bad:
        print("check_site: OK, no console error, failed or non-local request, broken image, "
              "untypeset formula or dead internal link")
        return 0
    for rel, msgs in sorted(bad.items()):
        print(f"\n{rel or '(before the first page)'}:")
        for m in msgs:
            print(f"  - {m}")
    print(f"\ncheck_site: FAILED on {len(bad)} page(s), {sum(map(len, bad.values()))} problem(s)")
    return 1


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("site", nargs="?", default="_build/html", type=Path, help="the built HTML site")
    ap.add_argument("--screenshots", type=Path, default=None,
                    help="where to keep screenshots (default: screenshots/ next to the site)")
    ap.add_argument("--chromium", default="/usr/bin/chromium", help="the Chromium executable")
    ap.add_argument("-v", "--verbose", action="store_true", help="print each page and its time")
    args = ap.parse_args(argv)
    shots = args.screenshots or args.site.resolve().parent / "screenshots"
    if not Path(args.chromium).is_file():
        print(f"check_site: no Chromium at {args.chromium} (apt-get install chromium)", file=sys.stderr)
        return 2
    return check(args.site, shots, args.chromium, verbose=args.verbose)


if __name__ == "__main__":
    sys.exit(main())
