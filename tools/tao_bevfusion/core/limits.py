"""How big an answer may get: one number per budget, used by every layer that cuts text."""

RESULT_LIMIT = (
    8 * 1024
)  # a tool result's text or structured summary, bytes (MCP clients keep context small)
TEXT_LIMIT = (
    6000  # error text and a log page: under RESULT_LIMIT with room for the rest of the result
)
