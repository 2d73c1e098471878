"""The model contract: what a model directory holds and how its answer is read.

Training writes model directories through this package and everything that reads a model
(the gateway, offline scoring, the benchmark) reads them through it, so the text the model sees
and the rule that turns its next-token distribution into a label are defined once:

- `prompts`: prompt templates (named, versioned) and the renderer that caps title and abstract
  in tokens inside the model's chat frame;
- `reading`: the label vocabulary read off the label tokens' log-probabilities, and the
  two-read rule (a capped read, and a full read when the capped one is unsure);
- `manifest`: the typed, versioned `manifest.json` of a fine-tuned model;
- `layout`: file names of a model directory, the served model name, where models live.

Only `tokenizers` and `pydantic` are needed here (no torch), so the gateway can import it.
"""
