/* synth.c: synthetic waybills for wgload (see synth.h). Owns the made-up name, address and
 * region tables. Invariants: every waybill it returns passes the gateway's rules (key fields
 * present, valid phones, valid ID numbers with a real past birth date and matching gender), and
 * its content depends only on (number, seed, now). */
#include "synth.h"

#include <stdio.h>
#include <string.h>

struct region {
    const char *code, *province, *city, *district, *street;
};

static const struct region regions[] = {
    {"110105", "北京市", "北京市", "朝阳区", "建国路"},
    {"310104", "上海市", "上海市", "徐汇区", "漕溪北路"},
    {"440305", "广东省", "深圳市", "南山区", "科技南路"},
    {"330106", "浙江省", "杭州市", "西湖区", "文三路"},
    {"510107", "四川省", "成都市", "武侯区", "人民南路四段"},
    {"420106", "湖北省", "武汉市", "武昌区", "中南路"},
};
#define NREGIONS (sizeof regions / sizeof regions[0])

static const char *const surnames[] = {"王", "李", "张", "刘", "陈", "杨", "赵", "黄", "周", "吴",
                                       "徐", "孙", "胡", "朱", "高", "林", "何", "郭", "马", "罗"};
static const char *const given[] = {"伟", "芳", "娜", "敏", "静", "丽", "强", "磊", "军", "洋",
                                    "勇", "艳", "杰", "娟", "涛", "明", "超", "秀", "霞", "平",
                                    "刚", "英", "华", "玉", "兰", "辉", "建", "国", "红", "文"};
static const char *const items[] = {"图书", "衣服",   "电子产品配件", "文件",
                                    "茶叶", "日用品", "鞋",           "玩具"};
static const char *const companies[] = {"星河贸易有限公司", "青禾文化传媒有限公司",
                                        "远帆电子科技有限公司"};

#define N(a) (sizeof(a) / sizeof((a)[0]))

static uint64_t mix(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

char wl_synth_id_check(const char *first17)
{
    static const int w[17] = {7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2};
    static const char map[] = "10X98765432";
    int sum = 0;
    for (int i = 0; i < 17; i++) {
        if (first17[i] < '0' || first17[i] > '9')
            return 0;
        sum += (first17[i] - '0') * w[i];
    }
    return map[sum % 11];
}

static int days_in_month(int y, int m)
{
    static const int d[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (m == 2 && ((y % 4 == 0 && y % 100 != 0) || y % 400 == 0))
        return 29;
    return d[m - 1];
}

static void make_name(char *out, size_t n, uint64_t h)
{
    const char *s = surnames[h % N(surnames)];
    const char *g1 = given[(h >> 8) % N(given)];
    if ((h >> 16) & 1)
        snprintf(out, n, "%s%s%s", s, g1, given[(h >> 20) % N(given)]);
    else
        snprintf(out, n, "%s%s", s, g1);
}

/* A mainland mobile number whose last nine digits are a bijection of n mod 10^9. */
static void make_phone(char *out, size_t n, uint64_t num, uint64_t mul, uint64_t add, uint64_t h)
{
    uint64_t mid = (num % 1000000000ULL * mul + add) % 1000000000ULL;
    snprintf(out, n, "1%c%09llu", (char)('3' + h % 7), (unsigned long long)mid);
}

static void make_address(char *out, size_t n, const struct region *r, uint64_t h)
{
    snprintf(out, n, "%s%u号%u栋%u单元%u室", r->street, (unsigned)(1 + h % 300),
             (unsigned)(1 + (h >> 9) % 30), (unsigned)(1 + (h >> 14) % 6),
             (unsigned)((1 + (h >> 17) % 28) * 100 + 1 + (h >> 22) % 4));
}

int wl_synth_number(char *out, size_t outlen, const struct wl_synth_cfg *cfg, uint64_t n)
{
    int len = snprintf(out, outlen, "%s%0*llu", cfg->prefix, cfg->width, (unsigned long long)n);
    return len < 10 || len > 20 || (size_t)len >= outlen ? -1 : 0;
}

int wl_synth_fill(struct wl_synth *s, const struct wl_synth_cfg *cfg, uint64_t num)
{
    uint64_t h0 = mix(num ^ cfg->seed), h1 = mix(h0), h2 = mix(h1), h3 = mix(h2);
    const struct region *sr = &regions[h0 % NREGIONS];
    const struct region *rr = &regions[(h0 >> 7) % NREGIONS];

    if (wl_synth_number(s->waybill_no, sizeof s->waybill_no, cfg, num) != 0)
        return -1;

    /* Sender: real-name pickup with an 18-digit resident ID number. */
    int year = 1950 + (int)(h1 % 56), month = 1 + (int)((h1 >> 8) % 12);
    int day = 1 + (int)((h1 >> 16) % (uint64_t)days_in_month(year, month));
    unsigned seq = (unsigned)((h1 >> 24) % 1000);
    snprintf(s->s_id, sizeof s->s_id, "%.6s%04d%02d%02d%03u", sr->code, year, month, day, seq);
    s->s_id[17] = wl_synth_id_check(s->s_id);
    s->s_id[18] = '\0';
    make_name(s->s_name, sizeof s->s_name, h2);
    make_phone(s->s_phone, sizeof s->s_phone, num, 387420489, 123456789, h2 >> 32);
    make_address(s->s_addr, sizeof s->s_addr, sr, h2 >> 24);
    snprintf(s->s_company, sizeof s->s_company, "%s",
             (h3 & 3) == 0 ? companies[(h3 >> 2) % N(companies)] : "");

    /* Recipient: name, phone and address only. */
    make_name(s->r_name, sizeof s->r_name, h3);
    if (cfg->same_phone)
        snprintf(s->r_phone, sizeof s->r_phone, "%s", cfg->same_phone);
    else
        make_phone(s->r_phone, sizeof s->r_phone, num, 282475249, 987654321, h3 >> 32);
    make_address(s->r_addr, sizeof s->r_addr, rr, h3 >> 20);
    snprintf(s->item, sizeof s->item, "%s %u件", items[(h0 >> 12) % N(items)],
             (unsigned)(1 + (h0 >> 20) % 5));

    waygate__v1__party__init(&s->sender);
    s->sender.name = s->s_name;
    s->sender.phone = s->s_phone;
    s->sender.province = (char *)sr->province;
    s->sender.city = (char *)sr->city;
    s->sender.district = (char *)sr->district;
    s->sender.address_detail = s->s_addr;
    s->sender.company = s->s_company;
    s->sender.id_type = WAYGATE__V1__ID_TYPE__ID_TYPE_RESIDENT_CARD;
    s->sender.id_number = s->s_id;
    s->sender.gender =
        (seq % 2) ? WAYGATE__V1__GENDER__GENDER_MALE : WAYGATE__V1__GENDER__GENDER_FEMALE;

    waygate__v1__party__init(&s->recipient);
    s->recipient.name = s->r_name;
    s->recipient.phone = s->r_phone;
    s->recipient.province = (char *)rr->province;
    s->recipient.city = (char *)rr->city;
    s->recipient.district = (char *)rr->district;
    s->recipient.address_detail = s->r_addr;

    waygate__v1__waybill__init(&s->wb);
    s->wb.waybill_no = s->waybill_no;
    s->wb.sender = &s->sender;
    s->wb.recipient = &s->recipient;
    s->wb.item_description = s->item;
    s->wb.pickup_time = cfg->now - (int64_t)(h0 % 3600);
    s->wb.origin_branch = (char *)cfg->origin_branch;
    s->wb.dest_region_code = (char *)rr->code;
    s->wb.weight_grams = (uint32_t)(100 + (h3 >> 40) % 20000);
    s->wb.service_type = (h3 >> 60) & 1 ? "express" : "standard";
    s->wb.security_level = WAYGATE__V1__SECURITY_LEVEL__SECURITY_LEVEL_UNSPECIFIED;
    return 0;
}

int wl_synth_selftest(void)
{
    /* The examples printed in GB 11643-1999 and a second published example. */
    if (wl_synth_id_check("11010519491231002") != 'X')
        return -1;
    if (wl_synth_id_check("44052418800101001") != '4')
        return -1;
    if (wl_synth_id_check("4405241880010100a") != 0)
        return -1;

    struct wl_synth_cfg cfg = {
        .prefix = "WG", .width = 12, .origin_branch = "", .seed = 1, .now = 1700000000};
    static struct wl_synth a, b;
    for (uint64_t n = 1; n < 20000; n++) {
        if (wl_synth_fill(&a, &cfg, n) != 0 || wl_synth_fill(&b, &cfg, n + 1) != 0)
            return -1;
        const char *id = a.s_id;
        if (strlen(id) != 18 || wl_synth_id_check(id) != id[17])
            return -1;
        int y = (id[6] - '0') * 1000 + (id[7] - '0') * 100 + (id[8] - '0') * 10 + (id[9] - '0');
        int m = (id[10] - '0') * 10 + (id[11] - '0'), d = (id[12] - '0') * 10 + (id[13] - '0');
        if (y < 1900 || y > 2010 || m < 1 || m > 12 || d < 1 || d > days_in_month(y, m))
            return -1;
        int male = (id[16] - '0') % 2 == 1;
        if (male != (a.sender.gender == WAYGATE__V1__GENDER__GENDER_MALE))
            return -1;
        if (strlen(a.s_phone) != 11 || a.s_phone[1] < '3' || a.s_phone[1] > '9')
            return -1;
        if (strcmp(a.s_phone + 2, b.s_phone + 2) == 0 || strcmp(a.r_phone + 2, b.r_phone + 2) == 0)
            return -1;
        if (strcmp(a.waybill_no, b.waybill_no) == 0)
            return -1;
    }
    /* A Search target: every recipient has the given phone, the senders' stay distinct. */
    cfg.same_phone = "13800138000";
    if (wl_synth_fill(&a, &cfg, 7) != 0 || wl_synth_fill(&b, &cfg, 8) != 0 ||
        strcmp(a.recipient.phone, "13800138000") != 0 ||
        strcmp(b.recipient.phone, "13800138000") != 0 || strcmp(a.s_phone, b.s_phone) == 0)
        return -1;
    cfg.same_phone = NULL;
    /* The number Get asks for is the one Submit sent. */
    char no[32];
    if (wl_synth_number(no, sizeof no, &cfg, 42) != 0 || strcmp(no, "WG000000000042") != 0 ||
        strcmp(no, a.waybill_no) == 0)
        return -1;
    if (wl_synth_fill(&a, &cfg, 42) != 0 || strcmp(no, a.waybill_no) != 0)
        return -1;
    /* Too long a number is refused rather than truncated. */
    cfg.width = 19;
    if (wl_synth_fill(&a, &cfg, 1) == 0)
        return -1;
    return 0;
}
