/* synth.h: synthetic, valid and unique waybills for the load generator. Every value is made up:
 * Chinese names from short character lists, mainland mobile numbers 1[3-9]xxxxxxxxx, 18-digit
 * resident ID numbers with a real birth date and a correct GB 11643 check digit. The content is
 * a pure function of (waybill number, seed); distinct numbers give distinct sender and recipient
 * phones (a bijection of the number modulo 10^9), so a run never trips the suspicious-phone rule;
 * with same_phone every recipient shares one phone (the sender phones stay distinct).
 * No allocation, no I/O. */
#ifndef WL_SYNTH_H
#define WL_SYNTH_H

#include <stddef.h>
#include <stdint.h>

#include "waygate/v1/common.pb-c.h"

/* What every synthetic waybill shares. */
struct wl_synth_cfg {
    const char *prefix;        /* fixed letter prefix of the waybill number */
    int width;                 /* digits of the numeric part (zero-padded) */
    const char *origin_branch; /* "" = the submitting principal's branch */
    uint64_t seed;             /* varies names, dates and addresses between runs */
    int64_t now;               /* pickup times are at most an hour before this (epoch seconds) */
    const char *same_phone;    /* non-NULL: every recipient has this phone (a Search target) */
};

/* One waybill: the protobuf-c message and the storage its strings point into. Fill with
 * wl_synth_fill(); the struct must not be copied afterwards (the message points into it). */
struct wl_synth {
    Waygate__V1__Waybill wb;
    Waygate__V1__Party sender;
    Waygate__V1__Party recipient;
    char waybill_no[32];
    char item[64];
    char s_name[32], s_phone[16], s_addr[128], s_company[64], s_id[32];
    char r_name[32], r_phone[16], r_addr[128];
};

/* Fills *s with the waybill whose number has numeric part n. Returns 0, or -1 when the number
 * would not fit in 10..20 characters. */
int wl_synth_fill(struct wl_synth *s, const struct wl_synth_cfg *cfg, uint64_t n);

/* Writes the waybill number with numeric part n (prefix, zero-padded to width) into out.
 * Returns 0, or -1 when it would not fit in 10..20 characters or in outlen. */
int wl_synth_number(char *out, size_t outlen, const struct wl_synth_cfg *cfg, uint64_t n);

/* The GB 11643 (ISO 7064 MOD 11-2) check character for the first 17 digits of an 18-digit
 * resident ID number: '0'..'9' or 'X'; 0 when the input is not 17 digits. */
char wl_synth_id_check(const char *first17);

/* Known-answer self-test of the check digit and the generator; returns 0 when it passes. */
int wl_synth_selftest(void);

#endif
