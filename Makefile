# Two commands on a fresh machine: `make demo` and `make test`. Both set up .venv first.
.PHONY: setup lock demo test test-unit test-colcon fuzz mutate mutate-changed test-own-data lint format bench soak clean

VENV := .venv
# The Python package's folder: its tests, benchmarks and tool settings (pyproject.toml) run from there.
PACKAGE := fastsam_ros
ACTIVATE := . $(CURDIR)/$(VENV)/bin/activate
IN_PACKAGE := $(ACTIVATE) && cd $(PACKAGE)

setup:
	@bash scripts/setup_env.sh

# Pins every package of the set-up environment into requirements/lock.txt, which make setup
# installs under: run it after changing requirements/*.txt (make setup first, with the changed
# package's line deleted from the lock).
lock: setup
	@$(ACTIVATE) && pip freeze --all --exclude-editable | grep -v -E '^(pip|fastsam_msgs)==' >requirements/lock.txt

demo: setup
	@$(ACTIVATE) && fastsam_demo --output demo_output

# Lint (style and layer contracts), then every test: unit, graph (real node over DDS), system,
# in TEST_WORKERS processes; each test file stays in one (its module fixtures start one node).
# Files are handed out in their folders' order, the slow graph and system files first: xdist's
# default (most tests first) left the one-test colcon build, a minute long, to run alone at the end.
# Three workers on two cores: the graph tests spend much of their time waiting on node processes,
# DDS and timers, so a third keeps both cores busy (docs/TESTING.md).
TEST_WORKERS ?= 3
test: setup
	@$(ACTIVATE) && ruff check . && ruff format --check . && cd $(PACKAGE) && lint-imports && \
		pytest -ra -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder test

# The in-process tests only (no node process, no DDS): seconds to a minute.
test-unit: setup
	@$(IN_PACKAGE) && pytest -ra test/unit

# The colcon workspace test with both packages built in the workspace; make test builds fastsam_ros
# there over the messages make setup built into .venv, which saves the messages' CMake build.
test-colcon: setup
	@$(IN_PACKAGE) && FASTSAM_COLCON_BOTH=1 pytest -ra test/system/test_colcon_install.py

# The own-data tools alone (fastsam_play, fastsam_record, fastsam_web in headless Chromium);
# refreshes the README's screenshot of the page.
test-own-data: setup
	@$(IN_PACKAGE) && FASTSAM_ROS_SCREENSHOT=$(CURDIR)/docs/web_view.jpg pytest -ra test/unit/test_own_data_tools.py test/graph/test_own_data.py test/graph/test_web_page.py

# The seeded fuzz of the node over DDS and of the tools around it (web API, player, recorder)
# at length: make test runs 2 batches of the node's and one scale of the tools'.
fuzz: setup
	@$(IN_PACKAGE) && FASTSAM_FUZZ_BATCHES=$${FASTSAM_FUZZ_BATCHES:-40} FASTSAM_FUZZ_SCALE=$${FASTSAM_FUZZ_SCALE:-20} \
		pytest -ra -k fuzz test/graph/test_node_hostile_input.py test/graph/test_web_hostile.py \
		test/graph/test_play_hostile.py test/unit/test_play_sources.py test/graph/test_record_hostile.py

# Mutation testing against the in-process tests (docs/TESTING.md). MUTATE picks modules (default: every
# module of the package); each module's run is stopped after MUTATE_BUDGET seconds, keeping what it
# measured, so that a full run is bounded. mutate-changed mutates only the modules changed since
# MUTATE_BASE (default: the merge-base with main), uncommitted and new files included.
PACKAGE_MODULES := $(subst /,.,$(patsubst $(PACKAGE)/fastsam_ros/%.py,%,$(filter-out %/__init__.py,$(wildcard $(PACKAGE)/fastsam_ros/*/*.py $(PACKAGE)/fastsam_ros/*/*/*.py))))
MUTATE ?= $(PACKAGE_MODULES)
MUTATE_BUDGET ?= 600
MUTATE_BASE ?= $(shell git merge-base HEAD main 2>/dev/null || echo HEAD)
mutate: setup
	@$(IN_PACKAGE) && for module in $(MUTATE); do \
		nice -n 15 timeout -s INT -k 60 $(MUTATE_BUDGET) mutmut run --max-children 2 "fastsam_ros.$$module.*"; \
	done; python -m test_support.mutation_scores --modules $(MUTATE)

mutate-changed: setup
	@modules="$$($(IN_PACKAGE) && python -m test_support.mutation_scores --changed-since $(MUTATE_BASE))" && \
		if [ -z "$$modules" ]; then echo "no module of the package changed since $(MUTATE_BASE)"; \
		else $(MAKE) --no-print-directory mutate MUTATE="$$modules"; fi

bench: setup
	@$(IN_PACKAGE) && python -m benchmarks.benchmark --output $(CURDIR)/docs/PERFORMANCE.md

soak: setup
	@$(IN_PACKAGE) && python -m benchmarks.soak --frames 2000 --clients 4 --rate 50

lint: setup
	@$(ACTIVATE) && ruff check . && ruff format --check . && cd $(PACKAGE) && lint-imports

format: setup
	@$(ACTIVATE) && ruff format . && ruff check --fix .

clean:
	rm -rf build demo_output .ruff_cache $(addprefix $(PACKAGE)/,mutants .pytest_cache .hypothesis)
