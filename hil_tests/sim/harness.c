/*
 * harness.c: one or two simulated Arduino boards (simavr 1.6) for the HIL rig.
 *
 * Each board runs a real .elf build and gets:
 *   - UART0 as a pty, for pyserial and the gateway (see "UART <-> pty" below for why
 *     not libsimavrparts' uart_pty);
 *   - a DS1307 at 0x68 on its I2C bus (ds1338_virt), time settable, battery-backed
 *     (it keeps counting, in simulated time, while the board is stopped or unpowered);
 *   - analog inputs settable in millivolts;
 *   - EEPROM loaded from and saved to a file, so it survives resets and restarts;
 *   - with two boards, a bridge that carries I2C transactions addressed to the other
 *     board's slave address (simavr 1.6 cannot wire two TWI cores directly).
 *
 * Control channel: with --control PATH, a unix stream socket at PATH (the harness
 * waits for one client before the simulation starts, and exits when it disconnects
 * or on SIGTERM); without it, stdin/stdout. Commands one per line; replies one line
 * each, "ok ..." or "err ...". Asynchronous events start with "event ". Every line a board
 * prints on its UART is also reported as "L <board> <sim_ms> <text>" so tests can
 * assert on the simulated clock even while the gateway holds the pty, and every I2C
 * write carried between the boards as "T <from> <to> <sim_ms> <hex bytes>".
 * Library chatter (simavr and parts printf to stdout) goes to stderr.
 *
 * Commands (NAME is a board name):
 *   ptys                      -> ok a=/dev/pts/N [b=/dev/pts/M]
 *   time                      -> ok ms=<simulated ms>
 *   until MS                  -> ok ms=... once simulated time has reached MS
 *   pace RATIO                -> run at RATIO x real time (0 = as fast as possible)
 *   stop NAME | resume NAME   -> freeze / continue the core (RAM kept)
 *   reset NAME                -> reset the core (EEPROM and RTC kept; MCUSR says EXTRF)
 *   power NAME off|on         -> power cut (core stops) / power up (reset, then run; MCUSR
 *                                says PORF)
 *   eecut NAME K              -> cut power right after the K-th next EEPROM byte write
 *   eewrites NAME             -> ok n=<EEPROM byte writes since start>
 *   eeprom NAME               -> ok <hex of the whole EEPROM>
 *   hang NAME                 -> the board's main program hangs: the CPU jumps to a spin loop
 *                                (interrupts keep running), as a call stuck on a bus or a card
 *                                would; only its watchdog gets it out (it then resets: MCUSR WDRF)
 *   i2c cut | i2c restore     -> cut / restore the I2C line between the two boards
 *   i2cpeer ADDR              -> the test is an I2C target at ADDR (hex, 7-bit): the boards' master
 *                                writes to it are ACKed and reported as "T <board> ext <ms> <hex>"
 *   i2cw NAME HEX             -> the test as an I2C controller: a master write of HEX to the
 *                                board's own slave address (reported as "T ext <board> <ms> <hex>")
 *   uart NAME cut|restore     -> unplug / replug the board's serial line (the pty);
 *                                its lines are still reported on the control channel
 *   rtc NAME EPOCH_S          -> set the DS1307 to that Unix time, running
 *   rtc NAME halt             -> set the clock-halt bit (a chip that lost its battery)
 *   rtcget NAME               -> ok epoch=<s> halted=<0|1>
 *   adc NAME CHANNEL MV       -> set analog input CHANNEL to MV millivolts
 *   quit                      -> save EEPROMs, exit
 *
 * Set HARNESS_DEBUG=1 to trace the I2C bridge on stderr.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <pty.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "sim_avr.h"
#include "sim_elf.h"
#include "sim_irq.h"
#include "avr_adc.h"
#include "avr_eeprom.h"
#include "avr_twi.h"
#include "avr_uart.h"
#include "ds1338_virt.h"

#define MAX_BOARDS 2
#define PS_PER_MS 1000000000ULL
#define QUANTUM_PS 20000000ULL /* 20 us: boards run in lock step to this grain */
#define EECR_ADDR 0x3F         /* same data address on the ATmega328P and ATmega2560 */
#define EEPE_BIT 1
#define TWAR_ADDR 0xBA
#define TWCR_ADDR 0xBC
#define TWINT_BIT 7
#define TWEN_BIT 2
#define BRIDGE_QUEUE 64
#define LINE_MAX 512

typedef struct board {
	char name[16];
	avr_t *avr;
	/* UART0 <-> pty, all in the simulation thread */
	int pty_master, pty_slave;
	char pty_name[64];
	uint8_t *tx; /* board -> pty bytes not yet written (the pty's buffer was full) */
	size_t tx_len;
	uint8_t rx[1024]; /* pty -> board bytes not yet taken by the UART */
	size_t rx_len, rx_off;
	int uart_xon;
	ds1338_virt_t rtc;
	char eeprom_path[512];
	uint64_t ps_per_cycle;
	/* local time = base_ps + (cycle - base_cycle) * ps_per_cycle */
	uint64_t base_ps;
	avr_cycle_count_t base_cycle;
	int running; /* 0: stopped or unpowered */
	int uart_cut;
	int powered;
	/* DS1307 time, kept by the harness (battery-backed, counts in simulated time) */
	int rtc_halted;
	int64_t rtc_epoch_ms_at_base; /* RTC time at rtc_base_ps */
	uint64_t rtc_base_ps;
	uint8_t rtc_shadow[7]; /* registers as last written by the harness */
	/* EEPROM write hook */
	avr_io_write_t eecr_write;
	void *eecr_param;
	uint64_t ee_writes;
	long eecut_left; /* >0: cut power after this many more byte writes */
	int cut_now;
	/* analog inputs */
	int adc_mv[16];
	/* UART line capture */
	char line[LINE_MAX];
	size_t line_len;
	/* I2C bridge: messages waiting for this board's TWI to be ready */
	uint32_t bq[BRIDGE_QUEUE];
	int bq_head, bq_len;
	avr_twi_t *twi; /* the core's TWI module (public struct in avr_twi.h) */
	avr_io_write_t twcr_write;
	void *twcr_param;
	int twi_handled; /* the firmware acknowledged the last TWI event (wrote TWINT) */
	uint64_t awaiting_since_ps;
	int session_to_peer; /* this board (as master) is talking to the peer */
	uint8_t i2c_tx[32]; /* bytes of the current write to the peer, for the bus monitor */
	int i2c_tx_len;
} board_t;

static board_t boards[MAX_BOARDS];
static int nboards;
static uint64_t sim_ps; /* global simulated time */
static int i2c_cut;
static uint8_t ext_target; /* "i2cpeer": a 7-bit address the test plays a target at (0: none) */
static double pace_ratio;
static uint64_t pace_sim0;
static struct timespec pace_wall0;
static FILE *out; /* the control channel */
static int debug; /* HARNESS_DEBUG=1: trace the I2C bridge on stderr */
static long long until_ms = -1;

/* ---- command queue filled by the stdin thread, drained by the simulation loop ---- */
#define CMDQ 64
static char cmdq[CMDQ][256];
static int cmdq_head, cmdq_len;
static volatile int cmdq_flag;
static volatile int stdin_eof; /* the client went away, or SIGTERM: save and exit */
static int in_fd;
static pthread_mutex_t cmdq_lock = PTHREAD_MUTEX_INITIALIZER;

static void reply(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vfprintf(out, fmt, ap);
	va_end(ap);
	fputc('\n', out);
	fflush(out);
}

static uint64_t board_ps(board_t *b)
{
	return b->base_ps + (b->avr->cycle - b->base_cycle) * b->ps_per_cycle;
}

static void board_rebase(board_t *b)
{
	b->base_ps = sim_ps;
	b->base_cycle = b->avr->cycle;
}

static board_t *find_board(const char *name)
{
	for (int i = 0; i < nboards; i++)
		if (!strcmp(boards[i].name, name))
			return &boards[i];
	return NULL;
}

static board_t *peer_of(board_t *b)
{
	if (nboards < 2)
		return NULL;
	return b == &boards[0] ? &boards[1] : &boards[0];
}

/* ---------------------------------- EEPROM ---------------------------------- */

static uint8_t *eeprom_mem(board_t *b, uint32_t *size)
{
	/* GET with ee == NULL hands out a pointer to the EEPROM itself */
	avr_eeprom_desc_t d = {0};
	d.offset = 0;
	d.size = b->avr->e2end + 1;
	avr_ioctl(b->avr, AVR_IOCTL_EEPROM_GET, &d); /* 1.6 returns -1 even when it worked */
	if (!d.ee)
		return NULL;
	*size = d.size;
	return d.ee;
}

static void eeprom_save(board_t *b)
{
	uint32_t size = 0;
	uint8_t *ee = eeprom_mem(b, &size);
	if (!ee || !b->eeprom_path[0])
		return;
	char tmp[600];
	snprintf(tmp, sizeof tmp, "%s.tmp", b->eeprom_path);
	FILE *f = fopen(tmp, "wb");
	if (!f)
		return;
	fwrite(ee, 1, size, f);
	fclose(f);
	rename(tmp, b->eeprom_path); /* atomic: a reader never sees half a file */
}

static void eeprom_load(board_t *b)
{
	uint32_t size = 0;
	uint8_t *ee = eeprom_mem(b, &size);
	if (!ee)
		return;
	memset(ee, 0xFF, size); /* an erased EEPROM reads 0xFF */
	FILE *f = b->eeprom_path[0] ? fopen(b->eeprom_path, "rb") : NULL;
	if (f) {
		size_t n = fread(ee, 1, size, f);
		(void)n;
		fclose(f);
	}
}

/* Chained in front of the EEPROM module's EECR handler to count byte writes. */
static void eecr_hook(avr_t *avr, avr_io_addr_t addr, uint8_t v, void *param)
{
	board_t *b = param;
	b->eecr_write(avr, addr, v, b->eecr_param);
	if (v & (1 << EEPE_BIT)) {
		b->ee_writes++;
		if (b->eecut_left > 0 && --b->eecut_left == 0)
			b->cut_now = 1; /* the scheduler cuts power after this instruction */
	}
}

/* ------------------------------------ RTC ------------------------------------ */

static uint8_t bcd(int v) { return (uint8_t)(((v / 10) << 4) | (v % 10)); }
static int unbcd(uint8_t v) { return (v >> 4) * 10 + (v & 0x0F); }

static int64_t days_from_civil(int y, int m, int d)
{
	y -= m <= 2;
	int64_t era = (y >= 0 ? y : y - 399) / 400;
	int64_t yoe = y - era * 400;
	int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

static void civil_from_days(int64_t z, int *y, int *m, int *d)
{
	z += 719468;
	int64_t era = (z >= 0 ? z : z - 146096) / 146097;
	int64_t doe = z - era * 146097;
	int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	int64_t mp = (5 * doy + 2) / 153;
	*d = (int)(doy - (153 * mp + 2) / 5 + 1);
	*m = (int)(mp < 10 ? mp + 3 : mp - 9);
	*y = (int)(yoe + era * 400 + (*m <= 2));
}

static int64_t rtc_now_ms(board_t *b)
{
	if (b->rtc_halted)
		return b->rtc_epoch_ms_at_base;
	return b->rtc_epoch_ms_at_base + (int64_t)((sim_ps - b->rtc_base_ps) / PS_PER_MS);
}

static void rtc_encode(board_t *b)
{
	int64_t s = rtc_now_ms(b) / 1000;
	int64_t days = s / 86400, rem = s % 86400;
	int y, m, d;
	civil_from_days(days, &y, &m, &d);
	uint8_t *r = b->rtc.nvram;
	r[0] = bcd((int)(rem % 60)) | (b->rtc_halted ? 0x80 : 0);
	r[1] = bcd((int)(rem / 60 % 60));
	r[2] = bcd((int)(rem / 3600)); /* 24-hour mode */
	r[3] = (uint8_t)(((days + 4) % 7) + 1); /* 1970-01-01 was a Thursday; 1 = Sunday */
	r[4] = bcd(d);
	r[5] = bcd(m);
	r[6] = bcd((y - 2000) % 100);
	memcpy(b->rtc_shadow, r, 7);
}

/* The firmware wrote the clock registers: take its time from now on. */
static void rtc_decode(board_t *b)
{
	uint8_t *r = b->rtc.nvram;
	int hour;
	if (r[2] & 0x40) { /* 12-hour mode */
		hour = unbcd(r[2] & 0x1F) % 12 + ((r[2] & 0x20) ? 12 : 0);
	} else {
		hour = unbcd(r[2] & 0x3F);
	}
	int64_t days = days_from_civil(2000 + unbcd(r[6]), unbcd(r[5] & 0x1F), unbcd(r[4] & 0x3F));
	int64_t s = days * 86400 + hour * 3600 + unbcd(r[1] & 0x7F) * 60 + unbcd(r[0] & 0x7F);
	b->rtc_halted = (r[0] & 0x80) != 0;
	b->rtc_epoch_ms_at_base = s * 1000;
	b->rtc_base_ps = sim_ps;
	memcpy(b->rtc_shadow, r, 7);
}

static void rtc_set(board_t *b, int64_t epoch_s, int halted)
{
	b->rtc_epoch_ms_at_base = epoch_s * 1000;
	b->rtc_base_ps = sim_ps;
	b->rtc_halted = halted;
	rtc_encode(b);
}

/* Called every simulated millisecond: keep the registers ticking, like the real
 * chip, but never in the middle of a transaction (the DS1307 latches at START). */
static void rtc_refresh(board_t *b)
{
	if (b->rtc.selected)
		return;
	if (memcmp(b->rtc_shadow, b->rtc.nvram, 7) != 0)
		rtc_decode(b);
	else
		rtc_encode(b);
}

/* ------------------------------------ ADC ------------------------------------ */

static void adc_apply(board_t *b, int ch)
{
	avr_irq_t *irq = avr_io_getirq(b->avr, AVR_IOCTL_ADC_GETIRQ, ch);
	if (irq)
		avr_raise_irq(irq, (uint32_t)b->adc_mv[ch]);
}

/* ------------------------------------ UART ----------------------------------- */

/*
 * UART <-> pty. libsimavrparts' uart_pty runs its own thread that touches the core's UART
 * without a lock (simavr 1.6), and in our runs it stopped delivering to a reader in another
 * process after the first line. This bridge is driven by the simulation thread instead: every
 * byte the board sends is queued and written to the pty master without blocking; every
 * simulated millisecond, bytes read from the master are handed to the UART while it has room
 * (XON). The harness keeps the slave side open itself, in raw mode, so the master never sees a
 * hang-up and nothing is echoed back; a pyserial reader flushes the old input when it opens.
 */
#define TX_MAX (256 * 1024)

static int pty_open(board_t *b)
{
	struct termios tio;
	if (openpty(&b->pty_master, &b->pty_slave, b->pty_name, NULL, NULL) != 0) {
		fprintf(stderr, "harness: openpty: %s\n", strerror(errno));
		return -1;
	}
	tcgetattr(b->pty_slave, &tio);
	cfmakeraw(&tio);
	tcsetattr(b->pty_slave, TCSANOW, &tio);
	fcntl(b->pty_master, F_SETFL, fcntl(b->pty_master, F_GETFL) | O_NONBLOCK);
	b->tx = malloc(TX_MAX);
	b->uart_xon = 1;
	fprintf(stderr, "harness: board %s UART0 on %s\n", b->name, b->pty_name);
	return 0;
}

static void pty_flush(board_t *b)
{
	while (b->tx_len) {
		ssize_t n = write(b->pty_master, b->tx, b->tx_len);
		if (n <= 0)
			break; /* EAGAIN: nobody is reading; keep the bytes for later */
		memmove(b->tx, b->tx + n, b->tx_len - (size_t)n);
		b->tx_len -= (size_t)n;
	}
}

static void pty_poll(board_t *b)
{
	if (b->rx_off == b->rx_len) {
		b->rx_off = b->rx_len = 0;
		ssize_t n = read(b->pty_master, b->rx, sizeof b->rx);
		if (n > 0 && !b->uart_cut && b->running)
			b->rx_len = (size_t)n;
	}
	avr_irq_t *in = avr_io_getirq(b->avr, AVR_IOCTL_UART_GETIRQ('0'), UART_IRQ_INPUT);
	while (b->uart_xon && b->rx_off < b->rx_len)
		avr_raise_irq(in, b->rx[b->rx_off++]);
	pty_flush(b);
}

static void uart_xon_hook(struct avr_irq_t *irq, uint32_t value, void *param)
{
	(void)irq;
	(void)value;
	((board_t *)param)->uart_xon = 1;
}

static void uart_xoff_hook(struct avr_irq_t *irq, uint32_t value, void *param)
{
	(void)irq;
	(void)value;
	((board_t *)param)->uart_xon = 0;
}

static void uart_out_hook(struct avr_irq_t *irq, uint32_t value, void *param)
{
	(void)irq;
	board_t *b = param;
	char c = (char)value;
	if (!b->uart_cut) {
		if (b->tx_len == TX_MAX) { /* a port nobody reads: the oldest bytes go */
			memmove(b->tx, b->tx + TX_MAX / 2, TX_MAX / 2);
			b->tx_len = TX_MAX / 2;
		}
		b->tx[b->tx_len++] = (uint8_t)c;
		if (c == '\n')
			pty_flush(b);
	}
	if (c == '\n') {
		b->line[b->line_len] = 0;
		fprintf(out, "L %s %.3f %s\n", b->name, (double)board_ps(b) / PS_PER_MS, b->line);
		fflush(out);
		b->line_len = 0;
	} else if (c != '\r' && b->line_len < LINE_MAX - 1) {
		b->line[b->line_len++] = c;
	}
}

/* --------------------------------- I2C bridge --------------------------------- */
/*
 * simavr 1.6 cannot connect two TWI cores: its master expects a slave to ACK
 * synchronously, inside the IRQ that carries the address or data byte, and its slave
 * side reports the wrong status codes (a STOP shows up as 0xA8, never 0xA0). So the
 * bridge answers the master for the peer at once (ACK if the peer is powered, its TWI
 * enabled with that slave address, and the line not cut), queues the transaction for
 * the peer, and plays it to the peer's TWI the way an ATmega's hardware would:
 * status 0x60 (own SLA+W), 0x80 per data byte, 0xA0 at STOP, each with TWINT, one at a
 * time once the peer's firmware has handled the previous one (written TWINT).
 * Only master writes are carried (a heartbeat); a master read from the peer reads 0xFF.
 */

enum { BQ_START = 1, BQ_DATA, BQ_STOP };

static int peer_listens(board_t *peer, uint8_t addr7)
{
	if (!peer || !peer->running || i2c_cut)
		return 0;
	uint8_t twar = peer->avr->data[TWAR_ADDR];
	uint8_t twcr = peer->avr->data[TWCR_ADDR];
	return (twcr & (1 << TWEN_BIT)) && twar && (twar >> 1) == addr7;
}

static void bridge_enqueue(board_t *peer, int kind, uint8_t data)
{
	if (peer->bq_len >= BRIDGE_QUEUE)
		return;
	peer->bq[(peer->bq_head + peer->bq_len) % BRIDGE_QUEUE] = ((uint32_t)kind << 8) | data;
	peer->bq_len++;
}

static void twi_out_hook(struct avr_irq_t *irq, uint32_t value, void *param)
{
	(void)irq;
	board_t *b = param;
	board_t *peer = peer_of(b);
	avr_twi_msg_irq_t m;
	m.u.v = value;
	avr_irq_t *in = avr_io_getirq(b->avr, AVR_IOCTL_TWI_GETIRQ(0), TWI_IRQ_INPUT);

	if (m.u.twi.msg & TWI_COND_START) { /* master START + SLA+R/W */
		uint8_t sla = m.u.twi.addr;
		b->session_to_peer = 0;
		if ((sla >> 1) != (DS1338_VIRT_TWI_ADDR >> 1) && peer_listens(peer, sla >> 1)) {
			b->session_to_peer = 1 + (sla & 1);
			b->i2c_tx_len = 0;
			avr_raise_irq(in, avr_twi_irq_msg(TWI_COND_ACK, sla, 1));
			if (!(sla & 1))
				bridge_enqueue(peer, BQ_START, sla);
		} else if (ext_target && (sla >> 1) == ext_target && !i2c_cut) {
			b->session_to_peer = 3 + (sla & 1); /* 3: write to the test's target, 4: read */
			b->i2c_tx_len = 0;
			avr_raise_irq(in, avr_twi_irq_msg(TWI_COND_ACK, sla, 1));
		}
		return;
	}
	if (!b->session_to_peer)
		return;
	if (b->session_to_peer >= 3) { /* the test's target: writes reported as "T NAME ext", reads give 0xFF */
		if (m.u.twi.msg & TWI_COND_STOP) {
			if (b->session_to_peer == 3) {
				fprintf(out, "T %s ext %.3f ", b->name, (double)board_ps(b) / PS_PER_MS);
				for (int i = 0; i < b->i2c_tx_len; i++)
					fprintf(out, "%02x", b->i2c_tx[i]);
				fputc('\n', out);
				fflush(out);
			}
			b->session_to_peer = 0;
		} else if (i2c_cut) {
			b->session_to_peer = 0;
		} else if ((m.u.twi.msg & TWI_COND_WRITE) && b->session_to_peer == 3) {
			avr_raise_irq(in, avr_twi_irq_msg(TWI_COND_ACK, m.u.twi.addr, 1));
			if (b->i2c_tx_len < (int)sizeof b->i2c_tx)
				b->i2c_tx[b->i2c_tx_len++] = m.u.twi.data;
		} else if (m.u.twi.msg & TWI_COND_READ) {
			avr_raise_irq(in, avr_twi_irq_msg(TWI_COND_READ, m.u.twi.addr, 0xFF));
		}
		return;
	}
	if (m.u.twi.msg & TWI_COND_STOP) {
		if (b->session_to_peer == 1) {
			bridge_enqueue(peer, BQ_STOP, 0);
			fprintf(out, "T %s %s %.3f ", b->name, peer->name, (double)board_ps(b) / PS_PER_MS);
			for (int i = 0; i < b->i2c_tx_len; i++)
				fprintf(out, "%02x", b->i2c_tx[i]);
			fputc('\n', out);
			fflush(out);
		}
		b->session_to_peer = 0;
		return;
	}
	if (i2c_cut || !peer->running) { /* line cut mid-transaction: nobody ACKs */
		b->session_to_peer = 0;
		return;
	}
	if ((m.u.twi.msg & TWI_COND_WRITE) && b->session_to_peer == 1) {
		avr_raise_irq(in, avr_twi_irq_msg(TWI_COND_ACK, m.u.twi.addr, 1));
		bridge_enqueue(peer, BQ_DATA, m.u.twi.data);
		if (b->i2c_tx_len < (int)sizeof b->i2c_tx)
			b->i2c_tx[b->i2c_tx_len++] = m.u.twi.data;
	} else if (m.u.twi.msg & TWI_COND_READ) {
		avr_raise_irq(in, avr_twi_irq_msg(TWI_COND_READ, m.u.twi.addr, 0xFF));
	}
}

static void twi_status_hook(struct avr_irq_t *irq, uint32_t value, void *param)
{
	(void)irq;
	board_t *b = param;
	if (debug)
		fprintf(stderr, "twi %s status %02x at %.3f\n", b->name, value, (double)board_ps(b) / PS_PER_MS);
}

/* What the TWI hardware does when it has a new status for the firmware. */
static void twi_slave_status(board_t *b, uint8_t status)
{
	avr_twi_t *p = b->twi;
	avr_regbit_setto_raw(b->avr, p->twsr, status);
	avr_raise_irq(p->io.irq + TWI_IRQ_STATUS, status);
	avr_raise_interrupt(b->avr, &p->twi);
}

/* Chained in front of the TWI module's TWCR handler: writing TWINT=1 is how the
 * firmware says it has handled the current TWI event. */
static void twcr_hook(avr_t *avr, avr_io_addr_t addr, uint8_t v, void *param)
{
	board_t *b = param;
	b->twcr_write(avr, addr, v, b->twcr_param);
	if (v & (1 << TWINT_BIT))
		b->twi_handled = 1;
}

/* Play the next queued bridge event once the firmware handled the last one. */
static void bridge_deliver(board_t *b)
{
	if (!b->bq_len || !b->twi)
		return;
	/* a firmware that never answers (TWI disabled meanwhile) must not block the queue */
	int stuck = board_ps(b) - b->awaiting_since_ps > PS_PER_MS;
	if (!b->twi_handled && !stuck)
		return;
	if (!(b->avr->data[TWCR_ADDR] & (1 << TWEN_BIT))) {
		b->bq_len = 0;
		return;
	}
	uint32_t e = b->bq[b->bq_head];
	b->bq_head = (b->bq_head + 1) % BRIDGE_QUEUE;
	b->bq_len--;
	b->twi_handled = 0;
	b->awaiting_since_ps = board_ps(b);
	if (debug)
		fprintf(stderr, "bridge -> %s %04x at %.3f\n", b->name, e, (double)board_ps(b) / PS_PER_MS);
	switch (e >> 8) {
	case BQ_START:
		b->twi->state = TWI_COND_SLAVE | TWI_COND_ADDR;
		b->twi->peer_addr = (uint8_t)e;
		twi_slave_status(b, 0x60); /* own SLA+W received, ACK returned */
		break;
	case BQ_DATA:
		b->avr->data[b->twi->r_twdr] = (uint8_t)e;
		twi_slave_status(b, 0x80); /* data received, ACK returned */
		break;
	case BQ_STOP:
		twi_slave_status(b, 0xA0); /* STOP received while addressed */
		b->twi->state = 0;
		break;
	}
}

/* ----------------------------------- boards ---------------------------------- */

static void no_sleep(avr_t *avr, avr_cycle_count_t howLong)
{
	/* The harness paces time itself; simavr's default would usleep here. */
	(void)avr;
	(void)howLong;
}

/* The DS1338 part ticks its registers from a 15 us cycle timer that drifts (its
 * 32768 Hz period is rounded to 30 us) and stops with the core; the harness keeps the
 * time itself (rtc_refresh), so the part's timer is cancelled. */
static void rtc_cancel_part_tick(board_t *b)
{
	for (avr_cycle_timer_slot_p t = b->avr->cycle_timers.timer; t; t = t->next) {
		if (t->param == &b->rtc) {
			avr_cycle_timer_cancel(b->avr, t->timer, t->param);
			return;
		}
	}
}

/* MCUSR (data address 0x54 on the ATmega328P and 2560): what the reset pin or the supply did. */
#define MCUSR_ADDR 0x54
#define MCUSR_PORF 0x01
#define MCUSR_EXTRF 0x02

static void board_power_on(board_t *b, uint8_t reset_flags)
{
	avr_reset(b->avr);
	b->avr->data[MCUSR_ADDR] |= reset_flags;
	rtc_cancel_part_tick(b);
	b->bq_len = 0;
	b->twi_handled = 1;
	b->session_to_peer = 0;
	b->line_len = 0;
	for (int ch = 0; ch < 16; ch++)
		adc_apply(b, ch);
	board_rebase(b);
	b->running = 1;
	b->powered = 1;
}

static void board_power_off(board_t *b)
{
	b->running = 0;
	b->powered = 0;
	b->eecut_left = 0;
	b->cut_now = 0;
	eeprom_save(b);
}

static int board_init(board_t *b, const char *mcu, const char *elf, uint32_t freq)
{
	elf_firmware_t fw;
	memset(&fw, 0, sizeof fw);
	if (elf_read_firmware(elf, &fw) != 0) {
		fprintf(stderr, "harness: cannot read %s\n", elf);
		return -1;
	}
	if (mcu && *mcu)
		snprintf(fw.mmcu, sizeof fw.mmcu, "%s", mcu);
	fw.frequency = freq;
	b->avr = avr_make_mcu_by_name(fw.mmcu);
	if (!b->avr) {
		fprintf(stderr, "harness: unknown mcu %s\n", fw.mmcu);
		return -1;
	}
	avr_init(b->avr);
	avr_load_firmware(b->avr, &fw);
	b->avr->frequency = freq;
	b->avr->vcc = b->avr->avcc = b->avr->aref = 5000;
	b->avr->sleep = no_sleep;
	b->ps_per_cycle = 1000000000000ULL / freq;

	if (pty_open(b) != 0)
		return -1;
	avr_irq_register_notify(avr_io_getirq(b->avr, AVR_IOCTL_UART_GETIRQ('0'), UART_IRQ_OUTPUT),
				uart_out_hook, b);
	avr_irq_register_notify(avr_io_getirq(b->avr, AVR_IOCTL_UART_GETIRQ('0'), UART_IRQ_OUT_XON),
				uart_xon_hook, b);
	avr_irq_register_notify(avr_io_getirq(b->avr, AVR_IOCTL_UART_GETIRQ('0'), UART_IRQ_OUT_XOFF),
				uart_xoff_hook, b);
	/* no stdio dump of the UART by simavr: the bytes go to the pty */
	uint32_t f = 0;
	avr_ioctl(b->avr, AVR_IOCTL_UART_GET_FLAGS('0'), &f);
	f &= ~AVR_UART_FLAG_STDIO;
	avr_ioctl(b->avr, AVR_IOCTL_UART_SET_FLAGS('0'), &f);

	ds1338_virt_init(b->avr, &b->rtc);
	ds1338_virt_attach_twi(&b->rtc, AVR_IOCTL_TWI_GETIRQ(0));
	avr_irq_register_notify(avr_io_getirq(b->avr, AVR_IOCTL_TWI_GETIRQ(0), TWI_IRQ_OUTPUT),
				twi_out_hook, b);
	avr_irq_register_notify(avr_io_getirq(b->avr, AVR_IOCTL_TWI_GETIRQ(0), TWI_IRQ_STATUS),
				twi_status_hook, b);

	for (avr_io_t *io = b->avr->io_port; io; io = io->next)
		if (io->kind && !strcmp(io->kind, "twi"))
			b->twi = (avr_twi_t *)io; /* the avr_io_t is the struct's first member */
	int tio = AVR_DATA_TO_IO(TWCR_ADDR);
	b->twcr_write = b->avr->io[tio].w.c;
	b->twcr_param = b->avr->io[tio].w.param;
	if (b->twcr_write) {
		b->avr->io[tio].w.c = twcr_hook;
		b->avr->io[tio].w.param = b;
	}

	int io = AVR_DATA_TO_IO(EECR_ADDR);
	b->eecr_write = b->avr->io[io].w.c;
	b->eecr_param = b->avr->io[io].w.param;
	if (b->eecr_write) {
		b->avr->io[io].w.c = eecr_hook;
		b->avr->io[io].w.param = b;
	}
	eeprom_load(b);
	return 0;
}

/* --------------------------------- commands ---------------------------------- */

static void reply_ptys(const char *word)
{
	fputs(word, out);
	for (int i = 0; i < nboards; i++)
		fprintf(out, " %s=%s", boards[i].name, boards[i].pty_name);
	fputc('\n', out);
	fflush(out);
}

static void cmd_exec(char *line)
{
	char *argv[6] = {0};
	int argc = 0;
	for (char *t = strtok(line, " \t\r\n"); t && argc < 6; t = strtok(NULL, " \t\r\n"))
		argv[argc++] = t;
	if (!argc)
		return;
	const char *c = argv[0];
	board_t *b = argc > 1 ? find_board(argv[1]) : NULL;
	int needs_board = !strcmp(c, "stop") || !strcmp(c, "resume") || !strcmp(c, "reset") ||
			  !strcmp(c, "power") || !strcmp(c, "eecut") || !strcmp(c, "eeprom") ||
			  !strcmp(c, "eewrites") || !strcmp(c, "rtc") || !strcmp(c, "rtcget") ||
			  !strcmp(c, "adc") || !strcmp(c, "uart") || !strcmp(c, "hang") ||
			  !strcmp(c, "i2cw");
	if (needs_board && !b) {
		reply("err unknown board %s", argc > 1 ? argv[1] : "(none)");
		return;
	}
	double now_ms = (double)sim_ps / PS_PER_MS;

	if (!strcmp(c, "ptys")) {
		reply_ptys("ok");
	} else if (!strcmp(c, "time")) {
		reply("ok ms=%.3f", now_ms);
	} else if (!strcmp(c, "until") && argc > 1) {
		until_ms = atoll(argv[1]); /* replied to by the loop */
	} else if (!strcmp(c, "pace") && argc > 1) {
		pace_ratio = atof(argv[1]);
		pace_sim0 = sim_ps;
		clock_gettime(CLOCK_MONOTONIC, &pace_wall0);
		reply("ok pace=%g", pace_ratio);
	} else if (!strcmp(c, "stop")) {
		b->running = 0;
		reply("ok ms=%.3f", now_ms);
	} else if (!strcmp(c, "resume")) {
		if (!b->powered) {
			reply("err %s is unpowered", b->name);
			return;
		}
		if (!b->running) {
			board_rebase(b);
			b->running = 1;
		}
		reply("ok ms=%.3f", now_ms);
	} else if (!strcmp(c, "reset")) {
		eeprom_save(b);
		board_power_on(b, MCUSR_EXTRF);
		reply("ok ms=%.3f", now_ms);
	} else if (!strcmp(c, "power") && argc > 2) {
		if (!strcmp(argv[2], "off"))
			board_power_off(b);
		else
			board_power_on(b, MCUSR_PORF);
		reply("ok ms=%.3f", now_ms);
	} else if (!strcmp(c, "eecut") && argc > 2) {
		b->eecut_left = atol(argv[2]);
		reply("ok");
	} else if (!strcmp(c, "eewrites")) {
		reply("ok n=%llu", (unsigned long long)b->ee_writes);
	} else if (!strcmp(c, "eeprom")) {
		uint32_t size = 0;
		uint8_t *ee = eeprom_mem(b, &size);
		char *hex = malloc(size * 2 + 1);
		for (uint32_t i = 0; i < size; i++)
			sprintf(hex + 2 * i, "%02x", ee[i]);
		hex[size * 2] = 0;
		reply("ok %s", hex);
		free(hex);
	} else if (!strcmp(c, "uart") && argc > 2) {
		int cut = !strcmp(argv[2], "cut");
		if (cut) { /* what was on the wire is lost with it */
			b->tx_len = 0;
			b->rx_len = b->rx_off = 0;
		}
		b->uart_cut = cut;
		reply("ok uart=%s", cut ? "cut" : "connected");
	} else if (!strcmp(c, "hang")) {
		/* "rjmp ." (0xCFFF) in the last word of flash, which the firmware does not use */
		uint32_t at = (b->avr->flashend - 1) & ~1u;
		b->avr->flash[at] = 0xFF;
		b->avr->flash[at + 1] = 0xCF;
		b->avr->pc = at;
		reply("ok ms=%.3f", now_ms);
	} else if (!strcmp(c, "i2cpeer") && argc > 1) {
		ext_target = (uint8_t)strtol(argv[1], NULL, 16);
		reply("ok i2cpeer=%02x", ext_target);
	} else if (!strcmp(c, "i2cw") && argc > 2) {
		/* a master write from the test to the board's own slave address */
		uint8_t addr7 = b->avr->data[TWAR_ADDR] >> 1;
		size_t n = strlen(argv[2]) / 2;
		if (!peer_listens(b, addr7) || n == 0 || n > 32) {
			reply("err %s does not listen on I2C", b->name);
			return;
		}
		bridge_enqueue(b, BQ_START, (uint8_t)(addr7 << 1));
		for (size_t i = 0; i < n; i++) {
			char hx[3] = {argv[2][2 * i], argv[2][2 * i + 1], 0};
			bridge_enqueue(b, BQ_DATA, (uint8_t)strtol(hx, NULL, 16));
		}
		bridge_enqueue(b, BQ_STOP, 0);
		fprintf(out, "T ext %s %.3f %s\n", b->name, now_ms, argv[2]);
		fflush(out);
		reply("ok ms=%.3f", now_ms);
	} else if (!strcmp(c, "i2c") && argc > 1) {
		i2c_cut = !strcmp(argv[1], "cut");
		reply("ok i2c=%s", i2c_cut ? "cut" : "connected");
	} else if (!strcmp(c, "rtc") && argc > 2) {
		if (!strcmp(argv[2], "halt"))
			rtc_set(b, rtc_now_ms(b) / 1000, 1);
		else
			rtc_set(b, atoll(argv[2]), 0);
		reply("ok");
	} else if (!strcmp(c, "rtcget")) {
		rtc_refresh(b);
		reply("ok epoch=%lld halted=%d", (long long)(rtc_now_ms(b) / 1000), b->rtc_halted);
	} else if (!strcmp(c, "adc") && argc > 3) {
		int ch = atoi(argv[2]);
		if (ch < 0 || ch > 15) {
			reply("err channel");
			return;
		}
		b->adc_mv[ch] = atoi(argv[3]);
		adc_apply(b, ch);
		reply("ok");
	} else if (!strcmp(c, "quit")) {
		for (int i = 0; i < nboards; i++)
			eeprom_save(&boards[i]);
		reply("ok bye");
		fflush(stdout); /* not fflush(NULL): the reader thread holds the input stream's lock */
		_exit(0);
	} else {
		reply("err unknown command %s", c);
	}
}

static void *stdin_thread(void *arg)
{
	(void)arg;
	FILE *in = fdopen(in_fd, "r");
	char buf[256];
	while (in && fgets(buf, sizeof buf, in)) {
		pthread_mutex_lock(&cmdq_lock);
		if (cmdq_len < CMDQ) {
			snprintf(cmdq[(cmdq_head + cmdq_len) % CMDQ], sizeof cmdq[0], "%s", buf);
			cmdq_len++;
		}
		cmdq_flag = 1;
		pthread_mutex_unlock(&cmdq_lock);
	}
	stdin_eof = 1; /* the test process went away: exit like "quit" */
	return NULL;
}

static void on_sigterm(int sig)
{
	(void)sig;
	stdin_eof = 1;
}

/* Listen on a unix socket and wait for the one client (the rig). */
static int control_accept(const char *path)
{
	int ls = socket(AF_UNIX, SOCK_STREAM, 0);
	struct sockaddr_un addr = {0};
	addr.sun_family = AF_UNIX;
	snprintf(addr.sun_path, sizeof addr.sun_path, "%s", path);
	unlink(path);
	if (ls < 0 || bind(ls, (struct sockaddr *)&addr, sizeof addr) != 0 || listen(ls, 1) != 0) {
		fprintf(stderr, "harness: cannot listen on %s: %s\n", path, strerror(errno));
		exit(1);
	}
	int c = accept(ls, NULL, NULL);
	close(ls);
	unlink(path);
	if (c < 0) {
		fprintf(stderr, "harness: accept: %s\n", strerror(errno));
		exit(1);
	}
	return c;
}

static void drain_commands(void)
{
	char line[256];
	for (;;) {
		pthread_mutex_lock(&cmdq_lock);
		if (!cmdq_len) {
			cmdq_flag = 0;
			pthread_mutex_unlock(&cmdq_lock);
			break;
		}
		memcpy(line, cmdq[cmdq_head], sizeof line);
		cmdq_head = (cmdq_head + 1) % CMDQ;
		cmdq_len--;
		pthread_mutex_unlock(&cmdq_lock);
		cmd_exec(line);
	}
}

static void pace(void)
{
	double ratio = pace_ratio;
	int idle = 1;
	for (int i = 0; i < nboards; i++)
		idle &= !boards[i].running;
	if (ratio <= 0 && !idle)
		return;
	if (ratio <= 0)
		ratio = 1.0; /* nothing to simulate: let time pass at real speed */
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	double wall = (now.tv_sec - pace_wall0.tv_sec) + (now.tv_nsec - pace_wall0.tv_nsec) / 1e9;
	double sim = (double)(sim_ps - pace_sim0) / 1e12;
	double ahead = sim / ratio - wall;
	if (ahead > 0.0005) {
		struct timespec ts = {(time_t)ahead, (long)((ahead - (time_t)ahead) * 1e9)};
		nanosleep(&ts, NULL);
	} else if (ahead < -0.5) {
		/* we fell behind (a busy machine): do not try to catch up in a burst */
		pace_sim0 = sim_ps;
		pace_wall0 = now;
	}
}

static void usage(void)
{
	fprintf(stderr,
		"usage: harness -b name=a,elf=FILE[,mcu=atmega328p][,eeprom=FILE][,rtc=EPOCH_S][,freq=16000000]"
		" [-b ...] [--pace RATIO] [--control SOCKET]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	/* Library printf chatter goes to stderr, never into the control channel. */
	int fd = dup(1);
	dup2(2, 1);
	setvbuf(stdout, NULL, _IOLBF, 0);
	const char *control = NULL;
	debug = getenv("HARNESS_DEBUG") != NULL;
	signal(SIGPIPE, SIG_IGN);
	struct sigaction sa = {0};
	sa.sa_handler = on_sigterm; /* no SA_RESTART: a SIGTERM also ends a wait in accept() */
	sigaction(SIGTERM, &sa, NULL);

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "-b") && i + 1 < argc && nboards < MAX_BOARDS) {
			board_t *b = &boards[nboards];
			char mcu[32] = "atmega328p", elf[512] = "";
			uint32_t freq = 16000000;
			long long rtc = 946684800; /* a DS1307 that just got a battery: 2000-01-01 */
			int halted = 1;
			snprintf(b->name, sizeof b->name, "%c", 'a' + nboards);
			char *spec = strdup(argv[++i]);
			for (char *kv = strtok(spec, ","); kv; kv = strtok(NULL, ",")) {
				char *eq = strchr(kv, '=');
				if (!eq)
					usage();
				*eq = 0;
				const char *k = kv, *v = eq + 1;
				if (!strcmp(k, "name")) snprintf(b->name, sizeof b->name, "%s", v);
				else if (!strcmp(k, "elf")) snprintf(elf, sizeof elf, "%s", v);
				else if (!strcmp(k, "mcu")) snprintf(mcu, sizeof mcu, "%s", v);
				else if (!strcmp(k, "eeprom")) snprintf(b->eeprom_path, sizeof b->eeprom_path, "%s", v);
				else if (!strcmp(k, "freq")) freq = (uint32_t)atol(v);
				else if (!strcmp(k, "rtc")) { rtc = atoll(v); halted = 0; }
				else usage();
			}
			free(spec);
			if (!elf[0] || board_init(b, mcu, elf, freq) != 0)
				return 1;
			rtc_set(b, rtc, halted);
			nboards++;
		} else if (!strcmp(argv[i], "--control") && i + 1 < argc) {
			control = argv[++i];
		} else if (!strcmp(argv[i], "--pace") && i + 1 < argc) {
			pace_ratio = atof(argv[++i]);
		} else {
			usage();
		}
	}
	if (!nboards)
		usage();

	if (control) {
		int c = control_accept(control);
		close(fd);
		in_fd = c;
		fd = dup(c);
	} else {
		in_fd = 0;
	}
	out = fdopen(fd, "w");
	setvbuf(out, NULL, _IOLBF, 0);

	for (int i = 0; i < nboards; i++)
		board_power_on(&boards[i], MCUSR_PORF);
	clock_gettime(CLOCK_MONOTONIC, &pace_wall0);
	pace_sim0 = 0;

	pthread_t th;
	pthread_create(&th, NULL, stdin_thread, NULL);
	reply_ptys("ready");

	uint64_t next_ms_ps = PS_PER_MS;
	for (;;) {
		uint64_t target = sim_ps + QUANTUM_PS;
		for (int i = 0; i < nboards; i++) {
			board_t *b = &boards[i];
			while (b->running && board_ps(b) < target) {
				if (b->bq_len)
					bridge_deliver(b);
				int state = avr_run(b->avr);
				if (b->cut_now) {
					board_power_off(b);
					reply("event %s powercut ms=%.3f eewrites=%llu", b->name,
					      (double)board_ps(b) / PS_PER_MS, (unsigned long long)b->ee_writes);
				} else if (state == cpu_Done || state == cpu_Crashed) {
					b->running = 0;
					reply("event %s crashed state=%d ms=%.3f", b->name, state,
					      (double)board_ps(b) / PS_PER_MS);
				}
			}
		}
		sim_ps = target;
		if (sim_ps >= next_ms_ps) {
			next_ms_ps += PS_PER_MS;
			for (int i = 0; i < nboards; i++) {
				rtc_refresh(&boards[i]);
				pty_poll(&boards[i]);
			}
			if (cmdq_flag)
				drain_commands();
			if (stdin_eof) {
				for (int i = 0; i < nboards; i++)
					eeprom_save(&boards[i]);
				_exit(0);
			}
			if (until_ms >= 0 && sim_ps >= (uint64_t)until_ms * PS_PER_MS) {
				until_ms = -1;
				reply("ok ms=%.3f", (double)sim_ps / PS_PER_MS);
			}
			pace();
		}
	}
}
