"""Process heartbeats and the notification (Discord) outbox."""
from django.db import models

from .strategies import Strategy


class Heartbeat(models.Model):
    """Last sign of life of one process (hub, worker:NAME, …); the database is the truth."""

    process = models.CharField(max_length=64, unique=True)
    host = models.CharField(max_length=128, blank=True)
    pid = models.PositiveIntegerField(null=True, blank=True)
    state = models.CharField(max_length=32, default="starting")
    last_seen = models.DateTimeField()
    last_bar_time = models.DateTimeField(null=True, blank=True)
    open_positions = models.PositiveIntegerField(default=0)
    interval = models.PositiveIntegerField(default=30, help_text="seconds between beats")
    details = models.JSONField(default=dict, blank=True)
    stale_alerted = models.BooleanField(default=False, help_text="A stale alert is open for this process")

    class Meta:
        ordering = ["process"]

    def __str__(self):
        return f"{self.process} ({self.state})"


class Notification(models.Model):
    """A message waiting for (or done with) delivery to Discord."""

    class Kind(models.TextChoices):
        STARTUP = "startup", "startup"
        SHUTDOWN = "shutdown", "shutdown"
        ENTRY = "entry", "entry"
        EXIT = "exit", "exit"
        EMERGENCY = "emergency", "emergency"
        SUMMARY = "summary", "summary"
        INFO = "info", "info"

    class State(models.TextChoices):
        PENDING = "pending", "pending"
        SENDING = "sending", "sending"
        SENT = "sent", "sent"
        FAILED = "failed", "failed"
        COALESCED = "coalesced", "coalesced into a summary"

    strategy = models.ForeignKey(Strategy, null=True, blank=True, on_delete=models.CASCADE,
                                 related_name="notifications")
    kind = models.CharField(max_length=10, choices=Kind.choices)
    title = models.CharField(max_length=256)
    body = models.TextField(blank=True)
    fields = models.JSONField(default=dict, blank=True)
    dedupe_key = models.CharField(max_length=160, null=True, blank=True, unique=True,
                                  help_text="Same key → queued once (e.g. one daily-stop alert per day)")
    state = models.CharField(max_length=10, choices=State.choices, default=State.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    last_error = models.TextField(blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    claimed_at = models.DateTimeField(null=True, blank=True, help_text="When a delivery run took it (state sending)")
    claimed_by = models.CharField(max_length=80, blank=True, help_text="host:pid:start of the run that took it")
    created_at = models.DateTimeField(auto_now_add=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["state", "next_attempt_at"]), models.Index(fields=["kind", "-created_at"])]

    def __str__(self):
        return f"[{self.kind}] {self.title}"


class WorkerCursor(models.Model):
    """The last hourly bar time a strategy's worker has fully processed (its resume point)."""

    strategy = models.OneToOneField(Strategy, on_delete=models.CASCADE, related_name="cursor")
    last_bar_ms = models.BigIntegerField(default=0, help_text="Bar start (ms since epoch) of the last processed hour")
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self):
        return f"{self.strategy.name} @ {self.last_bar_ms}"


class ConfigRevision(models.Model):
    """One admin save of a strategy, an instrument or a strategy instrument: who changed what, when.
    It names the change a stale form is refused over, and keeps the history of the configuration."""

    model = models.CharField(max_length=40, help_text="strategy, instrument or strategyinstrument")
    object_id = models.PositiveBigIntegerField()
    version = models.PositiveIntegerField(help_text="The version this save made")
    object_repr = models.CharField(max_length=200)
    user = models.CharField(max_length=150)
    fields = models.JSONField(default=list, help_text="The fields changed (their labels)")
    at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-at", "-id"]
        constraints = [models.UniqueConstraint(fields=["model", "object_id", "version"], name="one_revision_per_version")]
        indexes = [models.Index(fields=["model", "object_id", "version"])]

    def __str__(self):
        return f"{self.object_repr} v{self.version} by {self.user}"
