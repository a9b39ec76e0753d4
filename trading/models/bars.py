"""The local bar store: hourly and daily bars kept in the database for warmup, backtests and training.

A table rather than files: it is shared by every host of a scaled-out appliance, backed up with the
rest of the database, and needs no extra dependency; ~250 days × 23 hours × 12 roots is small.
"""
from django.db import models


class StoredBar(models.Model):
    root = models.CharField(max_length=8)
    timeframe = models.CharField(max_length=3, choices=[("1h", "1 hour"), ("1d", "1 day")])
    ts = models.DateTimeField(help_text="Bar start (UTC); for 1d the session date at 00:00 UTC")
    contract = models.CharField(max_length=16, blank=True)
    open = models.FloatField()
    high = models.FloatField()
    low = models.FloatField()
    close = models.FloatField()
    volume = models.BigIntegerField()
    trades = models.PositiveIntegerField(default=0)
    source = models.CharField(max_length=16, help_text="hub, files or historical")

    class Meta:
        ordering = ["root", "timeframe", "ts"]
        constraints = [models.UniqueConstraint(fields=["root", "timeframe", "ts"], name="one_bar_per_time")]
        indexes = [models.Index(fields=["root", "timeframe", "-ts"])]

    def __str__(self):
        return f"{self.root} {self.timeframe} {self.ts:%Y-%m-%d %H:%M}"
