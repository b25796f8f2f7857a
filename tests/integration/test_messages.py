"""What travels on the queue: ids only, never a name, a member reference or a diagnosis."""

import base64
import json

from broker.database import engine
from broker.submit import submit_claim
from domain.services import members as member_service
from tests.integration.scenario import CLAIMS, membership


def test_claim_messages_carry_only_ids(sqlite_stack):
    member_service.import_members(
        engine(), enumerate(membership(10, 2), start=2), member_service.ImportReport()
    )
    for line in CLAIMS:
        submit_claim(line)
    # No worker runs: the messages wait in the file queue, exactly as sent.
    files = sorted((sqlite_stack.settings.queue_folder / "messages").glob("*.msg"))
    assert len(files) == 8  # one chain per new claim; the repeated submission sent nothing
    forbidden = ["C0005", "C73", "I21.0", "吴小漫", "广州市第一人民医院", "diagnosed_on", "icd10"]
    for path in files:
        message = json.loads(path.read_text())
        body = base64.b64decode(message["body"]).decode()
        visible = json.dumps(message["headers"], ensure_ascii=False) + body
        assert not [word for word in forbidden if word in visible], path.name
        args, kwargs, embed = json.loads(body)
        assert kwargs == {} and len(args) == 1 and isinstance(args[0], int)
        assert [link["args"] for link in embed["chain"]] == [args, args]
        assert message["headers"]["argsrepr"] == f"({args[0]},)"
