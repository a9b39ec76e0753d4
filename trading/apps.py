from django.apps import AppConfig


class TradingConfig(AppConfig):
    name = "trading"
    verbose_name = "Trading"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from trading import security

        security.connect()  # one alert per admin login lockout
