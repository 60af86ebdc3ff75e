"""Small helpers shared by the API tests."""

USER = "123e4567-e89b-12d3-a456-426614174000"


async def create_option(client, allocation=100, name="Gig", desc="Main hall"):
    response = await client.post("/ticket_options", json={"name": name, "desc": desc, "allocation": allocation})
    assert response.status == 201, await response.text()
    return await response.json()


async def assert_problem(response, status, problem_type=None):
    """The response is an RFC 9457 problem with this status; returns its body."""
    assert response.status == status, await response.text()
    assert response.content_type == "application/problem+json"
    body = await response.json()
    assert body["status"] == status
    assert body["title"]
    if problem_type is not None:
        assert body["type"] == problem_type
    return body
