from switchboard.testing import ErrorReply


async def test_client_gets_session_frame_and_joins_a_room(switchboard):
    client = await switchboard.connect(user="alice", tenant="acme", role="agent")
    assert client.session["user_id"] == "alice"
    assert await client.request("room:join", {"room": "lead:9"}) == {"room": "lead:9"}


async def test_customer_cannot_join_another_users_room(switchboard):
    client = await switchboard.connect(user="bob", tenant="acme", role="customer")
    try:
        await client.request("room:join", {"room": "user:alice"})
    except ErrorReply as exc:
        assert exc.code == "forbidden"
    else:
        raise AssertionError("join was allowed")
