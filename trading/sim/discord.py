"""A local Discord webhook stand-in: checks Discord's message limits, can rate-limit, records every POST.

Over-limit or empty messages get 400 {"code": 50035 | 50006, "message": ...} as Discord answers.
With `rate_limit=(5, 2.0)` each webhook path allows 5 posts per 2 s bucket and answers 429
{"message", "retry_after", "global": false} with Retry-After and X-RateLimit-* headers, as Discord
does; every answer carries X-RateLimit-* headers then. Success is 204 (200 with the message when
`?wait=true`). CLI: `python -m trading.sim.discord --port 8767 [--record F.jsonl] [--rate-limit 5/2]`.
"""
from __future__ import annotations

import math
import threading
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from trading.sim.httpstandin import HttpStandIn, answer, run_cli

# Discord's documented limits, counted here independently of trading.notify.discord.
LIMITS = {"content": 2000, "embeds": 10, "title": 256, "description": 4096, "fields": 25, "field.name": 256,
          "field.value": 1024, "footer.text": 2048, "author.name": 256, "total": 6000}


def _length(text) -> int:
    # Counted as JavaScript does (UTF-16 code units): never lower than Python's len().
    return len(str(text).encode("utf-16-le")) // 2


def limit_problems(message) -> list[str]:
    """Every way `message` breaks Discord's limits (empty list: Discord would accept it)."""
    if not isinstance(message, dict):
        return ["body must be a JSON object"]
    problems = []
    content = message.get("content") or ""
    embeds = message.get("embeds") or []
    if _length(content) > LIMITS["content"]:
        problems.append(f"content: must be {LIMITS['content']} or fewer in length")
    if not isinstance(embeds, list):
        return problems + ["embeds: must be a list"]
    if len(embeds) > LIMITS["embeds"]:
        problems.append(f"embeds: must be {LIMITS['embeds']} or fewer in length")
    total = 0
    for i, embed in enumerate(embeds):
        if not isinstance(embed, dict):
            problems.append(f"embeds.{i}: must be an object")
            continue
        for part in ("title", "description"):
            n = _length(embed.get(part) or "")
            total += n
            if n > LIMITS[part]:
                problems.append(f"embeds.{i}.{part}: must be {LIMITS[part]} or fewer in length")
        for part in ("footer", "author"):
            key = "text" if part == "footer" else "name"
            n = _length((embed.get(part) or {}).get(key) or "")
            total += n
            if n > LIMITS[f"{part}.{key}"]:
                problems.append(f"embeds.{i}.{part}.{key}: must be {LIMITS[f'{part}.{key}']} or fewer in length")
        fields = embed.get("fields") or []
        if len(fields) > LIMITS["fields"]:
            problems.append(f"embeds.{i}.fields: must be {LIMITS['fields']} or fewer in length")
        for j, field in enumerate(fields):
            for key in ("name", "value"):
                n = _length(field.get(key) or "")
                total += n
                if n == 0:
                    problems.append(f"embeds.{i}.fields.{j}.{key}: this field is required")
                elif n > LIMITS[f"field.{key}"]:
                    problems.append(f"embeds.{i}.fields.{j}.{key}: must be {LIMITS[f'field.{key}']} or fewer")
    if total > LIMITS["total"]:
        problems.append(f"embeds: total size of embeds must be {LIMITS['total']} or fewer")
    return problems


def message_summary(message) -> str:
    """A message on one line for the stand-in's page: its first embed's title (else description), else its
    content; "" when the body is not a message object."""
    if not isinstance(message, dict):
        return ""
    embeds = message.get("embeds")
    embeds = [e for e in embeds if isinstance(e, dict)] if isinstance(embeds, list) else []
    first = next((str(e.get("title") or e.get("description")) for e in embeds
                  if e.get("title") or e.get("description")), "")
    line = first or str(message.get("content") or "")
    return line + (f" (+{len(embeds) - 1} more embeds)" if len(embeds) > 1 else "")


def rate_limited(retry_after: float = 2.0, *, is_global: bool = False) -> dict:
    """A scripted 429 shaped like Discord's."""
    return answer(429, {"message": "You are being rate limited.", "retry_after": retry_after, "global": is_global},
                  {"Retry-After": str(math.ceil(retry_after)), "X-RateLimit-Limit": "5",
                   "X-RateLimit-Remaining": "0", "X-RateLimit-Reset-After": f"{retry_after:g}",
                   "X-RateLimit-Bucket": "sim", **({"X-RateLimit-Global": "true"} if is_global else {})})


class DiscordStandIn(HttpStandIn):
    name = "discord-standin"
    default_port = 8767
    noun = "message"

    def __init__(self, port: int = 0, record: Path | None = None, rate_limit: tuple[int, float] | None = None,
                 clock=time.monotonic):
        super().__init__(port, record)
        self.rate_limit = rate_limit
        self.clock = clock
        self._buckets: dict[str, tuple[float, int]] = {}  # path → (bucket start, used)
        self._bucket_lock = threading.Lock()

    def messages(self, status: int | None = 204) -> list[dict]:
        """Bodies received, only those answered `status` (None: all; 204 and 200 both count as 204)."""
        ok = lambda s: 200 <= s < 300  # noqa: E731
        return [e["body"] for e in self.snapshot()
                if status is None or e["status"] == status or (status == 204 and ok(e["status"]))]

    def summary(self, entry: dict) -> str:
        return message_summary(entry.get("body")) or super().summary(entry)

    def control(self, command: dict) -> dict:
        if "rate_limit" in command:
            value = command["rate_limit"]
            self.rate_limit = (int(value[0]), float(value[1])) if value else None
            with self._bucket_lock:
                self._buckets.clear()
        return {**super().control(command), "rate_limit": self.rate_limit}

    def _bucket_headers(self, path: str) -> tuple[bool, dict, float]:
        """Take one request from this webhook's bucket: (allowed, X-RateLimit headers, seconds to reset)."""
        limit, per = self.rate_limit
        now = self.clock()
        with self._bucket_lock:
            start, used = self._buckets.get(path, (now, 0))
            if now - start >= per:
                start, used = now, 0
            allowed = used < limit
            if allowed:
                used += 1
            self._buckets[path] = (start, used)
        reset_after = max(0.0, start + per - now)
        headers = {"X-RateLimit-Limit": str(limit), "X-RateLimit-Remaining": str(limit - used),
                   "X-RateLimit-Reset": f"{time.time() + reset_after:.3f}",
                   "X-RateLimit-Reset-After": f"{reset_after:.3f}", "X-RateLimit-Bucket": "sim-webhook"}
        return allowed, headers, reset_after

    def reject(self, entry: dict):
        entry["rate_headers"] = {}
        if self.rate_limit:
            allowed, headers, reset_after = self._bucket_headers(urlsplit(entry["path"]).path)
            entry["rate_headers"] = headers
            if not allowed:
                return 429, {"message": "You are being rate limited.", "retry_after": round(reset_after, 3),
                             "global": False}, {**headers, "Retry-After": str(math.ceil(reset_after))}
        if not entry["json"]:
            return 400, {"code": 50109, "message": "The request body contains invalid JSON."}, entry["rate_headers"]
        message = entry["body"]
        if isinstance(message, dict) and not (message.get("content") or message.get("embeds")):
            return 400, {"code": 50006, "message": "Cannot send an empty message"}, entry["rate_headers"]
        problems = limit_problems(message)
        if problems:
            return 400, {"code": 50035, "message": "Invalid Form Body", "errors": problems}, entry["rate_headers"]
        return None

    def accept(self, entry: dict):
        if parse_qs(urlsplit(entry["path"]).query).get("wait") == ["true"]:
            return 200, {"id": str(len(self.received) + 1), **entry["body"]}, entry["rate_headers"]
        return 204, None, entry["rate_headers"]


def _configure(parser) -> None:
    def per(text: str) -> tuple[int, float]:
        count, seconds = text.split("/")
        return int(count), float(seconds)

    parser.add_argument("--rate-limit", type=per, help="COUNT/SECONDS per webhook, e.g. 5/2 (default: none)")


def main(argv=None) -> int:
    return run_cli(DiscordStandIn, argv, prog="python -m trading.sim.discord", description=__doc__.splitlines()[0],
                   configure=_configure)


if __name__ == "__main__":
    raise SystemExit(main())
