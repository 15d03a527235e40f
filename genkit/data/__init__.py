"""Data: what genkit trains on (types, options), where it comes from (sources: folders
listed lazily, Hugging Face data sets, streams), and the datasets plugins build from it
(in-memory tensors, lazily decoded images, augmentation, the decoded cache)."""
