/* messages.h: status messages that more than one layer sends, so that a
 * caller sees the same words whichever part refused the call. */
#ifndef AKR_CORE_MESSAGES_H
#define AKR_CORE_MESSAGES_H

/* A call id that came back with another method, body or uid (the reply
 * cache, src/server/cache.c, and the durable reply store,
 * src/outbox/reply_store.c; docs/DELIVERY.md). */
#define AKR_MSG_CALL_ID_REUSED                                                         \
  "call id already used for another request (not the same method, body and uid "       \
  "as the first call with it): a retry must resend the same request, a new "           \
  "request needs a new call id"

#endif
