"""An instrument's ML model page in real headless Chromium at 1280×800: reached from the instrument list,
marked as trained on generated data, the walk-forward folds and the with/without comparison as the
model's metadata holds them, the warning when the filter does not help, nothing fetched from elsewhere."""
import json
from pathlib import Path
from urllib.parse import urlparse

import pytest
from django.core.management import call_command

from tests.browser.conftest import screenshot
from trading.models import Instrument

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
MODELS = Path(__file__).resolve().parents[2] / "models"
PASSWORD = "chromium-model-pw-3391"


@pytest.fixture
def small_page(page):
    page.set_viewport_size({"width": 1280, "height": 800})
    return page


def test_the_model_page_shows_folds_comparison_and_marks_generated_data(small_page, live_server, django_user_model,
                                                                          webhook_env, settings):
    settings.MODELS_DIR = MODELS
    call_command("load_demo")
    page = small_page
    foreign = []
    page.on("request", lambda r: foreign.append(r.url) if urlparse(r.url).netloc != urlparse(live_server.url).netloc
            and not r.url.startswith("data:") else None)
    django_user_model.objects.create_superuser("operator", password=PASSWORD)
    page.goto(f"{live_server.url}/admin/login/?next=/admin/trading/instrument/")
    page.fill("#id_username", "operator")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    cl = Instrument.objects.get(root="CL")
    row = page.locator("#result_list tr", has_text="Crude")
    assert row.locator(".generated-mark").inner_text() == "GENERATED DATA"
    row.locator("a.model-link").click()
    page.wait_for_selector("#model-page")
    assert page.url.endswith(f"/admin/trading/instrument/{cl.pk}/model/")

    meta = json.loads((MODELS / "CL.json").read_text())
    assert page.locator(".generated-banner").is_visible()
    assert "GENERATED DATA" in page.locator("#model-source").inner_text()
    assert meta["data_source"]["start"][:10] in page.locator("#model-source").inner_text()
    assert "days ago" in page.locator("#model-trained").inner_text()
    folds = page.locator("#folds tr.fold")
    assert folds.count() == len(meta["walk_forward"]["folds"]) == 4
    for i, fold in enumerate(meta["walk_forward"]["folds"]):
        cells = folds.nth(i).locator("td").all_inner_texts()
        assert cells[0] == str(fold["fold"]) and cells[4] == f"{fold['threshold']:.2f}"
        assert cells[5] == f"{fold['test']['taken']}/{fold['test']['signals']}"
        assert cells[10] == f"{fold['with_filter']['total_pnl']:,.2f}"
        assert cells[11] == f"{fold['without_filter']['total_pnl']:,.2f}"
    table = {r.locator("th").inner_text(): r.locator("td").all_inner_texts()
             for r in page.locator("#comparison tr").all()[1:]}
    w, wo = meta["comparison"]["with_filter"], meta["comparison"]["without_filter"]
    assert table["trades"] == [str(w["trades"]), str(wo["trades"])]
    assert table["P&L $"] == [f"{w['total_pnl']:,.2f}", f"{wo['total_pnl']:,.2f}"]
    assert table["max drawdown $"] == [f"{w['max_drawdown']:,.2f}", f"{wo['max_drawdown']:,.2f}"]
    # the shipped CL filter does not help out of sample: said in the verdict and as a warning
    assert page.locator("#verdict").inner_text() == "does not help"
    assert page.locator(".model-warning").first.is_visible()
    assert "does not help out of sample" in page.locator(".model-warnings").inner_text()
    assert page.evaluate("document.documentElement.scrollWidth") <= 1280  # fits the width: no sideways scroll
    screenshot(page, "model-page")
    assert foreign == []  # no external script, style or font
