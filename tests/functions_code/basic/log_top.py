"""A handler module that imports logging at the top, like most Lambda code."""
import logging

logger = logging.getLogger()
logger.setLevel(logging.INFO)


def handler(event, context):
    logger.info("logged %s", event.get("n"))
    return "ok"
