/* Executed-instruction counts of an emulated program, per translation block, between markers.
 *
 * A QEMU TCG plugin (API version 1, qemu-user 7.2 of Debian bookworm and later), built and
 * used by aiq_tvm.targets.arm.counting. Every translated block gets an inline counter; a
 * marker is the guest's lseek(-1, MARKER, 0) (fails with EBADF, changes nothing), on which
 * every counter is copied. At exit one line per block that ran: "vaddr n_insns c1 c2 ... ck"
 * with the counts at markers 1..k (hex vaddr, decimal counts).
 *
 *   QEMU_PLUGIN=file=qemu_count.so,out=/tmp/counts.txt qemu-aarch64 ./program
 *
 * Counters are plain adds: run the guest with one thread (TVM_NUM_THREADS=1).
 * The declarations below are the subset of QEMU's include/qemu/qemu-plugin.h this plugin
 * uses, so that it builds without QEMU's headers.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef uint64_t qemu_plugin_id_t;
typedef struct qemu_info_t qemu_info_t;
struct qemu_plugin_tb;
enum qemu_plugin_op { QEMU_PLUGIN_INLINE_ADD_U64 };
typedef void (*qemu_plugin_vcpu_tb_trans_cb_t)(qemu_plugin_id_t, struct qemu_plugin_tb *);
typedef void (*qemu_plugin_udata_cb_t)(qemu_plugin_id_t, void *);
typedef void (*qemu_plugin_vcpu_syscall_cb_t)(qemu_plugin_id_t, unsigned int, int64_t,
                                              uint64_t, uint64_t, uint64_t, uint64_t,
                                              uint64_t, uint64_t, uint64_t, uint64_t);
void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t, qemu_plugin_vcpu_tb_trans_cb_t);
void qemu_plugin_register_vcpu_syscall_cb(qemu_plugin_id_t, qemu_plugin_vcpu_syscall_cb_t);
void qemu_plugin_register_atexit_cb(qemu_plugin_id_t, qemu_plugin_udata_cb_t, void *);
size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *);
uint64_t qemu_plugin_tb_vaddr(const struct qemu_plugin_tb *);
void qemu_plugin_register_vcpu_tb_exec_inline(struct qemu_plugin_tb *, enum qemu_plugin_op,
                                              void *, uint64_t);

#define EXPORT __attribute__((visibility("default")))
EXPORT int qemu_plugin_version = 1;

#define SYS_LSEEK_AARCH64 62
#define MARKER 0x41495121u /* "AIQ!" */
#define MAX_MARKS 8

struct block {
    uint64_t vaddr, n_insns, count, marks[MAX_MARKS];
};

static struct block **blocks;
static size_t n_blocks, capacity;
static int n_marks;
static char out_path[4096];
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

static void on_translate(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
    struct block *b = calloc(1, sizeof *b);
    if (!b) {
        abort();
    }
    b->vaddr = qemu_plugin_tb_vaddr(tb);
    b->n_insns = qemu_plugin_tb_n_insns(tb);
    pthread_mutex_lock(&lock);
    if (n_blocks == capacity) {
        capacity = capacity ? 2 * capacity : 1 << 16;
        blocks = realloc(blocks, capacity * sizeof *blocks);
        if (!blocks) {
            abort();
        }
    }
    blocks[n_blocks++] = b;
    pthread_mutex_unlock(&lock);
    qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64, &b->count, 1);
}

static void on_syscall(qemu_plugin_id_t id, unsigned int vcpu, int64_t num, uint64_t a1,
                       uint64_t a2, uint64_t a3, uint64_t a4, uint64_t a5, uint64_t a6,
                       uint64_t a7, uint64_t a8)
{
    if (num != SYS_LSEEK_AARCH64 || a1 != UINT64_MAX || a2 != MARKER) {
        return;
    }
    pthread_mutex_lock(&lock);
    if (n_marks < MAX_MARKS) {
        for (size_t i = 0; i < n_blocks; i++) {
            blocks[i]->marks[n_marks] = blocks[i]->count;
        }
        n_marks++;
    }
    pthread_mutex_unlock(&lock);
}

static void on_exit_write(qemu_plugin_id_t id, void *unused)
{
    FILE *f = fopen(out_path, "w");
    if (!f) {
        fprintf(stderr, "qemu_count: cannot write %s\n", out_path);
        return;
    }
    fprintf(f, "# marks %d\n", n_marks);
    for (size_t i = 0; i < n_blocks; i++) {
        struct block *b = blocks[i];
        if (!b->count) {
            continue;
        }
        fprintf(f, "%llx %llu", (unsigned long long)b->vaddr, (unsigned long long)b->n_insns);
        for (int m = 0; m < n_marks; m++) {
            fprintf(f, " %llu", (unsigned long long)b->marks[m]);
        }
        fputc('\n', f);
    }
    fclose(f);
}

EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info, int argc,
                               char **argv)
{
    for (int i = 0; i < argc; i++) {
        if (!strncmp(argv[i], "out=", 4)) {
            snprintf(out_path, sizeof out_path, "%s", argv[i] + 4);
        }
    }
    if (!out_path[0]) {
        fprintf(stderr, "qemu_count: give the output file as out=PATH\n");
        return -1;
    }
    qemu_plugin_register_vcpu_tb_trans_cb(id, on_translate);
    qemu_plugin_register_vcpu_syscall_cb(id, on_syscall);
    qemu_plugin_register_atexit_cb(id, on_exit_write, NULL);
    return 0;
}
