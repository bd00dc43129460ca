"""Instruction data from curated records: templated (CheXinstruct-style task families) and
LLM-generated (LLaVA-Med-style conversations), verified, cached, exported to LLaVA JSON.

Engine-free API (phase 2, after the split):
    InstructionGenerator(InstructConfig).setup(); .generate(record, pool); .usage()
Beam: curate.instruct.beam.GenerateInstructions(config) -> tagged outputs.
CLI: `curate export llava` (curate.instruct.cli.register).
"""
