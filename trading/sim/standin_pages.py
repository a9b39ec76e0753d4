"""The stand-ins' pages for a browser: the newest requests one line each (`GET /`), and one request whole
(`GET /received/<n>`: its body pretty-printed, safe headers, the answer given). A page never shows a path
(a webhook's path is its secret; an 8-hex fingerprint stands in) and escapes every byte it was sent.
"""
from __future__ import annotations

import hashlib
import html
import json
import time
from urllib.parse import urlsplit

PAGE_ROWS = 200  # the newest this many on `GET /`: the page stays short however long the stand-in runs
SUMMARY_CHARS = 140


def webhook_fingerprint(path: str) -> str:
    """What a page shows for a request's webhook: the first 8 hex of the sha256 of its path (the path is a secret)."""
    return hashlib.sha256(urlsplit(path).path.encode()).hexdigest()[:8]


def one_line(text: str, limit: int = SUMMARY_CHARS) -> str:
    """`text` on one line, whitespace collapsed, cut to `limit` characters with an ellipsis."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


class Pages:
    """The pages of an HttpStandIn (which holds `received`, `_answers`, `_lock`, `name`, `url`, `entry()`)."""

    # --- pages for a browser --------------------------------------------------------------------------
    noun = "request"  # what one request is, in a page's title: "order", "message"

    def summary(self, entry: dict) -> str:
        """One line saying what a request asked for (never its path); a concrete stand-in says it better."""
        body = entry.get("body")
        return body if isinstance(body, str) else json.dumps(body, ensure_ascii=False)

    def index_page(self, before: int | None = None) -> str:
        """The newest `PAGE_ROWS` requests (older than number `before`, if given), newest first, one line each."""
        with self._lock:  # the requests and their answers as one consistent copy
            entries, answers = [dict(e) for e in self.received], list(self._answers)
        answers += [None] * (len(entries) - len(answers))
        total = len(entries)
        top = min(total, before - 1) if before else total
        numbers = range(top, max(0, top - PAGE_ROWS), -1)
        rows = "".join(self._index_row(n, entries[n - 1], answers[n - 1]) for n in numbers)
        if not total:
            shown = f"nothing received yet: POST a webhook to {html.escape(self.url)}/&lt;path&gt;"
        else:
            shown = (f"showing {len(numbers)} of {total}, newest first"
                     + (f" (#{numbers[0]} to #{numbers[-1]})" if numbers else ""))
        older = (f' · <a id="older" href="/?before={numbers[-1]}">older</a>'
                 if numbers and numbers[-1] > 1 else "")
        newest = ' · <a href="/">newest</a>' if before and top < total else ""
        table = (f'<table class="list"><colgroup><col style="width:4em"><col style="width:14.5em">'
                 f'<col style="width:15em"><col style="width:6.5em"><col></colgroup>'
                 f"<thead><tr><th>#</th><th>received (UTC)</th><th>answered</th><th>webhook</th>"
                 f"<th>summary</th></tr></thead><tbody>{rows}</tbody></table>") if rows else ""
        return self._page(f"{self.noun}s received",
                          f'<p class="meta" id="shown">{shown}{newest}{older}</p>{table}')

    def detail_page(self, n: int) -> str | None:
        """Request `n` whole: its body pretty-printed, its safe headers, the answer given; None if there is none."""
        found = self.entry(n)
        if found is None:
            return None
        entry, given, total = found
        older = f'<a id="older" href="/received/{n - 1}">&larr; #{n - 1}</a>' if n > 1 else "&larr;"
        newer = f'<a id="newer" href="/received/{n + 1}">#{n + 1} &rarr;</a>' if n < total else "&rarr;"
        nav = f'<p class="meta">{older} · <a id="all" href="/?before={n + 1}">list</a> · {newer}</p>'
        facts = _facts({"received (UTC)": _utc(entry.get("received_at")),
                        "webhook": webhook_fingerprint(entry.get("path") or ""),
                        "summary": one_line(self.summary(entry), 1000)})
        body = entry.get("body")
        kind = "" if entry.get("json") else " (not JSON: shown as text)"
        shown = json.dumps(body, indent=2, ensure_ascii=False) if entry.get("json") else str(body)
        if given is None:
            reply = (_facts({"status": entry.get("status")}, "answer-headers")
                     + "<p>Its body and headers are not kept across a restart: this request was replayed from the "
                       "record file.</p>")
        else:
            data = None if given["status"] == 204 else given.get("body")
            text = ("(no body)" if data is None else data if isinstance(data, str)
                    else json.dumps(data, indent=2, ensure_ascii=False))
            delay = f" (sent after {given['delay']:g} s)" if given.get("delay") else ""
            reply = (_facts({"status": f"{given['status']}{delay}", **(given.get("headers") or {})}, "answer-headers")
                     + f'<pre id="answer">{html.escape(text)}</pre>')
        return self._page(f"{self.noun} #{n} of {total}",
                          f"{nav}{facts}<h2>Body{kind}</h2><pre id=\"body\">{html.escape(shown)}</pre>"
                          f"<h2>Answer</h2>{reply}"
                          f"<h2>Headers</h2>{_facts(entry.get('headers') or {}, 'headers')}")

    def not_found_page(self) -> str:
        return self._page("not found", '<p>No such request here. <a href="/">The list</a></p>')

    def _index_row(self, n: int, entry: dict, given: dict | None) -> str:
        status = entry.get("status")
        ok = isinstance(status, int) and 200 <= status < 300
        answer_line = "" if ok else _refusal(given)
        summary = html.escape(one_line(self.summary(entry)))
        return (f'<tr data-n="{n}"><td><a href="/received/{n}">{n}</a></td>'
                f"<td>{_utc(entry.get('received_at'))}</td>"
                f'<td class="{"ok" if ok else "bad"}">{html.escape(str(status))}'
                f"{html.escape(' ' + answer_line) if answer_line else ''}</td>"
                f"<td><code>{webhook_fingerprint(entry.get('path') or '')}</code></td>"
                f'<td><a href="/received/{n}">{summary or "(empty)"}</a></td></tr>')

    def _page(self, title: str, content: str) -> str:
        head = html.escape(f"{self.name}: {title}")
        return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{head}</title>'
                f'<meta name="viewport" content="width=device-width, initial-scale=1"><style>{_STYLE}</style>'
                f"</head><body><h1>{head}</h1>{content}</body></html>")

_STYLE = ("body{font:13px/1.45 system-ui,sans-serif;margin:12px 16px;color:#1f2328}"
          "h1{font-size:16px;margin:0 0 4px}h2{font-size:14px;margin:14px 0 4px}"
          ".meta{margin:0 0 8px;color:#57606a}a{color:#0969da}"
          "table{border-collapse:collapse}th,td{padding:2px 8px;text-align:left;vertical-align:top;"
          "border-bottom:1px solid #e5e7eb}"
          "table.list{width:100%;table-layout:fixed;font-variant-numeric:tabular-nums}"
          "table.list td{white-space:nowrap;overflow:hidden;text-overflow:ellipsis;padding:1px 8px;line-height:1.35}"
          "table.list a{text-decoration:none}table.list tr:hover{background:#f0f6ff}"
          "thead th{position:sticky;top:0;background:#f6f8fa}"
          "table.facts th{color:#57606a;font-weight:normal;white-space:nowrap}"
          "table.facts td{overflow-wrap:anywhere}"
          ".ok{color:#1a7f37}.bad{color:#cf222e}"
          "pre{white-space:pre-wrap;overflow-wrap:anywhere;background:#f6f8fa;padding:8px;margin:0;max-width:100%}")


def _refusal(given: dict | None) -> str:
    """The `message` of an answer, short: why a request was refused, at a glance on its line."""
    body = (given or {}).get("body")
    return one_line(body["message"], 40) if isinstance(body, dict) and isinstance(body.get("message"), str) else ""


def _utc(ts) -> str:
    if not isinstance(ts, (int, float)):
        return ""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ts)) + f".{int(ts * 1000) % 1000:03d}"


def _facts(pairs: dict, id_: str = "facts") -> str:
    """A two-column table of names and values, every one escaped."""
    rows = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>" for k, v in pairs.items())
    return f'<table class="facts" id="{id_}">{rows}</table>' if rows else f'<p id="{id_}">(none)</p>'
