"""Speed figures of the appliance, each beside a reference run; run each script as `python bench/<name>.py`."""
