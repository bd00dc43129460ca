"""Exports of a build to the formats training code loads: a Hugging Face `datasets` folder
(`hf.py`) and WebDataset tar shards (`webdataset.py`), both read with pyarrow alone."""
