# All setup happens here, so a fresh machine needs only `make demo` or `make test`.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM := false

.PHONY: install demo test test-all lint format bench compressor compressor-lora compressor-gpt2 family clean

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first, from the local wheels, so nothing later resolves a different build
	$(PY) -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/latent-evo demo

test: $(STAMP)
	$(PY) -m pytest -q

test-all: $(STAMP)
	$(PY) -m pytest -q -m "slow or not slow"

lint: $(STAMP)
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff format . && $(VENV)/bin/ruff check --fix .

# The bundled default compressor, from scratch: zoo -> pretrain -> export into the package.
BUNDLE := latent_evo/assets/compressors/mnist1d-mlp
compressor: $(STAMP)
	$(VENV)/bin/latent-evo zoo generate --config configs/zoo/mnist1d-mlp-shared.yaml --out zoos/mnist1d-mlp-shared --resume
	$(VENV)/bin/latent-evo pretrain fit --config configs/pretrain/mnist1d-mlp-shared.yaml --name bundled-mnist1d-mlp
	rm -rf $(BUNDLE)
	$(VENV)/bin/latent-evo hub export runs/bundled-mnist1d-mlp $(BUNDLE) --repo-id latent-evo/mnist1d-mlp
	# the memorisation reference the demo draws next to SGD
	$(VENV)/bin/latent-evo zoo best zoos/mnist1d-mlp-shared $(BUNDLE)/best_zoo_network.safetensors

# One architecture family from scratch: its shared-init zoo -> its attention compressor, e.g.
#   make family FAMILY=mnist1d-cnn
family: $(STAMP)
	$(VENV)/bin/latent-evo zoo generate --config configs/zoo/$(FAMILY)-shared.yaml --out zoos/$(FAMILY)-shared --resume
	$(VENV)/bin/latent-evo pretrain fit --config configs/pretrain/$(FAMILY).yaml

# The low-rank decoding mode (GPT-2 'mini' adapters): base + LoRA zoo -> attention compressor.
compressor-lora: $(STAMP)
	$(VENV)/bin/latent-evo zoo lora --config configs/zoo/text-gpt2-mini-lora.yaml --out zoos/text-gpt2-mini-lora
	$(VENV)/bin/latent-evo pretrain fit --config configs/pretrain/text-gpt2-mini-lora.yaml

# The bundled GPT-2 compressor (`latent-evo demo --family gpt2`): the above, exported at float16
# with the base network beside it.
BUNDLE_GPT2 := latent_evo/assets/compressors/text-gpt2-mini-lora
compressor-gpt2: compressor-lora
	rm -rf $(BUNDLE_GPT2)
	$(VENV)/bin/latent-evo hub export runs/text-gpt2-mini-lora $(BUNDLE_GPT2) --half \
		--base-weights zoos/text-gpt2-mini-lora/base.safetensors --repo-id latent-evo/text-gpt2-mini-lora

bench: $(STAMP)
	$(VENV)/bin/latent-evo bench speed

clean:
	rm -rf $(VENV) runs zoos
