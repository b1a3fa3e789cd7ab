"""The conversations projection: users, conversations, turns and platform analysis."""

from projections.conversations.projection import ConversationsProjection
from projections.conversations.queries import get_conversation, get_user, list_conversations

__all__ = ["ConversationsProjection", "get_conversation", "get_user", "list_conversations"]
