"""Print the spec JSON Schema (`python -m curate.spec_schema > schemas/spec.schema.json`)."""

import json

from curate.spec import spec_json_schema

if __name__ == "__main__":
    print(json.dumps(spec_json_schema(), indent=2, sort_keys=True))
