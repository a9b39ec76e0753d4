"""The map of the house holds: strategies/ is framework-free, orders and alerts share one delivery core
and do not import each other, and no module grows past 400 lines."""
import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
    return found


def modules(package: str):
    return sorted((ROOT / package).rglob("*.py"))


def test_importing_the_strategy_library_loads_no_django_and_no_trading_module():
    code = ("import sys, importlib, pkgutil, strategies\n"
            "for m in pkgutil.iter_modules(strategies.__path__): importlib.import_module(f'strategies.{m.name}')\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('django', 'trading', 'pineops'))\n"
            "print(bad)")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_orders_and_alerts_meet_only_in_the_delivery_core():
    for path in modules("trading/notify"):
        assert not any(m.startswith("trading.execution") for m in imports(path)), path
    for path in modules("trading/execution"):
        assert not any(m.startswith("trading.notify") for m in imports(path)), path
    for path in modules("trading/delivery"):
        assert not any(m.startswith(("trading.execution", "trading.notify")) for m in imports(path)), path


def test_no_module_of_the_product_is_over_400_lines():
    long = [f"{p.relative_to(ROOT)} ({n} lines)" for package in ("pineops", "trading", "strategies")
            for p in modules(package) if "migrations" not in p.parts and (n := len(p.read_text().splitlines())) > 400]
    assert long == []
