"""`python -m loadtest bench`: the serving paths side by side on the same model, the same papers
and the same machine, one after the other (never two at once):

- baseline: the original notebook's way. Hugging Face `generate` per paper, one at a time, two
  new tokens sampled at temperature 0.1, torch on every core, the chat prompt with the full
  (uncapped) abstract; the label is the label word the generated text starts with. It computes
  in the engine's precision (the one this hardware favours), so the ratio stays fair.
- offline: vLLM's offline engine (`vllm.LLM`), every paper in one `generate` call, the served
  prompt (abstract capped by the template) and the served sampling parameters.
- server: vLLM's OpenAI server called directly by `concurrency` clients, with the body the
  gateway sends.
- gateway: the FastAPI gateway in front of that same server, `concurrency` clients.

MFU is measured against the matrix-product peak of that same precision, in the same run.

Each path is warmed up (on papers of the validation split) before it is timed; the engine's
prefix cache is emptied before each timed server round so no path finds another's prompts.
The heavy in-process paths run in a fresh child process each, so their memory and threads are
gone before the next path starts.

Modules, one per job: `options` (what one run is asked to do), `papers` (which papers, which
prompt, reading generated text), `figures` (a path's papers/s, latency, accuracy),
`isolation` (a path in a fresh child process), `baseline`, `offline`, `clients` (HTTP clients
of the engine and the gateway), `probe` (the unloaded latency probe), `served` (engine +
gateway and their timed rounds), `report` (targets, verdicts, markdown, JSON), `chart` and
`runner` (the whole benchmark, what the command calls).
"""
