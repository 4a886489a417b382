# The checks CI runs (.ci/run), for a checkout with the venv of the README active.
.PHONY: quality style test

# Lint and format check, as CI: pip install -e ".[quality]" first.
quality:
	ruff check .
	ruff format --check .

# Fix what the linter can and format every file.
style:
	ruff check --fix .
	ruff format .

test:
	python -m pytest
