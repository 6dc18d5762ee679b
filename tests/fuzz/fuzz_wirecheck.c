/* fuzz_wirecheck.c: the wire-string checker (rpc/wirecheck.c) against protobuf-c's unpacker, on
 * every request message of the API. The first byte chooses the message type; the rest is its
 * wire bytes. Beyond "no crash, no read outside the buffer", a message the checker passes and
 * protobuf-c unpacks must hold only valid UTF-8 in every string field at every depth (what the
 * checker exists to guarantee). */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "grpc/health/v1/health.pb-c.h"
#include "waygate/v1/admin.pb-c.h"
#include "waygate/v1/backend.pb-c.h"
#include "waygate/v1/compliance.pb-c.h"
#include "waygate/v1/intake.pb-c.h"
#include "waygate/v1/query.pb-c.h"

#include "utf8.h"
#include "wirecheck.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const ProtobufCMessageDescriptor *const descs[] = {
    &grpc__health__v1__health_check_request__descriptor,
    &waygate__v1__submit_request__descriptor,
    &waygate__v1__submit_batch_request__descriptor,
    &waygate__v1__record_scan_request__descriptor,
    &waygate__v1__get_request__descriptor,
    &waygate__v1__search_request__descriptor,
    &waygate__v1__reveal_request__descriptor,
    &waygate__v1__request_bulk_request__descriptor,
    &waygate__v1__approve_bulk_request__descriptor,
    &waygate__v1__run_bulk_request__descriptor,
    &waygate__v1__export_audit_request__descriptor,
    &waygate__v1__report_request__descriptor,
    &waygate__v1__request_lawful_access_request__descriptor,
    &waygate__v1__decide_lawful_access_request__descriptor,
    &waygate__v1__login_request__descriptor,
    &waygate__v1__change_password_request__descriptor,
    &waygate__v1__create_account_request__descriptor,
    &waygate__v1__disable_account_request__descriptor,
    &waygate__v1__issue_segment_request__descriptor,
    &waygate__v1__rotate_key_request__descriptor,
    &waygate__v1__get_bulk_request__descriptor,
    &waygate__v1__get_lawful_case_request__descriptor,
    &waygate__v1__deliver_request__descriptor,
    &waygate__v1__deliver_response__descriptor,
    &waygate__v1__waybill_view__descriptor,
};
#define NDESCS (sizeof(descs) / sizeof(descs[0]))

static void check_string(const char *s)
{
    if (s != NULL && !gw_utf8_valid(s, strlen(s)))
        __builtin_trap();
}

/* Every string field of m, at every depth, holds valid UTF-8. */
static void check_strings(const ProtobufCMessage *m, int depth)
{
    const ProtobufCMessageDescriptor *d = m->descriptor;

    if (depth > GW_WIRECHECK_MAX_DEPTH + 1)
        __builtin_trap();
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        const char *base = (const char *)m;
        if (f->type != PROTOBUF_C_TYPE_STRING && f->type != PROTOBUF_C_TYPE_MESSAGE)
            continue;
        if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
            uint32_t which = *(const uint32_t *)(const void *)(base + f->quantifier_offset);
            if (which != f->id)
                continue;
        }
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            size_t n = *(const size_t *)(const void *)(base + f->quantifier_offset);
            void *const *arr = *(void *const *const *)(const void *)(base + f->offset);
            for (size_t k = 0; k < n; k++) {
                if (f->type == PROTOBUF_C_TYPE_STRING)
                    check_string(arr[k]);
                else
                    check_strings(arr[k], depth + 1);
            }
            continue;
        }
        void *v = *(void *const *)(const void *)(base + f->offset);
        if (v == NULL)
            continue;
        if (f->type == PROTOBUF_C_TYPE_STRING)
            check_string(v);
        else
            check_strings(v, depth + 1);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const ProtobufCMessageDescriptor *d;
    ProtobufCMessage *m;
    struct gw_fault f;

    if (size < 1)
        return 0;
    d = descs[data[0] % NDESCS];
    memset(&f, 0, sizeof(f));
    if (gw_wirecheck(d, data + 1, size - 1, &f) != 0) {
        /* a refusal names a field path and a rule */
        if (f.code == 0 || memchr(f.field, '\0', sizeof(f.field)) == NULL || f.field[0] == '\0')
            __builtin_trap();
        return 0;
    }
    m = protobuf_c_message_unpack(d, NULL, size - 1, data + 1);
    if (m == NULL)
        return 0;
    check_strings(m, 0);
    protobuf_c_message_free_unpacked(m, NULL);
    return 0;
}
