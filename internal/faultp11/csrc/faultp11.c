/*
 * faultp11: a PKCS#11 module that forwards every call to another module and
 * injects latency and faults, for tests.
 *
 * Environment (read when noted; the client sets it just before that call):
 *   FAULTP11_TARGET      path of the real module; read once, at the first
 *                        C_GetFunctionList, and dlopen'ed RTLD_LOCAL|RTLD_NOW.
 *   FAULTP11_CONTROL     path of the control file; read at every C_Initialize.
 *   FAULTP11_LATENCY_US  microseconds added to each crypto call; read at every
 *                        C_Initialize.
 *
 * The control file holds one mode, re-read (when its stat data changed) at
 * most every 20 ms; a missing file means "ok":
 *   ok       forward every call.
 *   down     every call returns CKR_DEVICE_ERROR.
 *   hang     every call blocks while the mode stays "hang", then proceeds.
 *   busy N   the next N crypto calls return CKR_FUNCTION_FAILED.
 * C_Initialize, C_Finalize and C_GetFunctionList are never faulted, so that a
 * client recovers by re-initializing once the mode is back to "ok".
 *
 * Crypto calls are C_Sign, C_SignUpdate, C_SignFinal, C_Verify, C_Encrypt,
 * C_Decrypt, C_GenerateRandom, C_GenerateKey, C_GenerateKeyPair and
 * C_FindObjects. A length query (NULL output buffer) is not a crypto call: it
 * gets neither latency nor a busy failure, so one signature made the usual
 * way (query, then sign) costs one latency and consumes one busy unit. A busy
 * failure of a call that ends an operation (sign, verify, encrypt, decrypt)
 * still runs it in the target, discarding the result, so the operation ends as
 * PKCS#11 requires. "down" does not end operations: as after a real outage,
 * clients must finalize and initialize again.
 *
 * Each copy of this library under another file name is loaded separately by
 * dlopen and keeps its own state: one copy per simulated cluster.
 *
 * The PKCS#11 types are declared here (ABI of PKCS#11 v2.40 on LP64 and ILP32
 * Unix) so that no header package is needed to build it.
 */
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

typedef unsigned long U;
typedef unsigned long CK_RV;
typedef unsigned char CK_BBOOL;
typedef void *P;
typedef struct { unsigned char major, minor; } CK_VERSION;

#define CKR_OK 0x0UL
#define CKR_GENERAL_ERROR 0x5UL
#define CKR_FUNCTION_FAILED 0x6UL
#define CKR_ARGUMENTS_BAD 0x7UL
#define CKR_DEVICE_ERROR 0x30UL

#define EXPORT __attribute__((visibility("default")))

/* Every function of CK_FUNCTION_LIST after C_GetFunctionList, in order:
 * X(name, kind, parameters, arguments, is_real_call), where kind is 0 for
 * other calls, 1 for crypto calls and 2 for crypto calls that end an
 * operation (PKCS#11 ends it when they fail); kinds 3 to 6 are counted calls
 * (open, close, close all sessions, login) that are otherwise like 0. */
#define FUNCS(X) \
	X(C_GetSlotList, 0, (CK_BBOOL a, P b, P c), (a, b, c), 1) \
	X(C_GetSlotInfo, 0, (U a, P b), (a, b), 1) \
	X(C_GetTokenInfo, 0, (U a, P b), (a, b), 1) \
	X(C_GetMechanismList, 0, (U a, P b, P c), (a, b, c), 1) \
	X(C_GetMechanismInfo, 0, (U a, U b, P c), (a, b, c), 1) \
	X(C_InitToken, 0, (U a, P b, U c, P d), (a, b, c, d), 1) \
	X(C_InitPIN, 0, (U a, P b, U c), (a, b, c), 1) \
	X(C_SetPIN, 0, (U a, P b, U c, P d, U e), (a, b, c, d, e), 1) \
	X(C_OpenSession, 3, (U a, U b, P c, P d, P e), (a, b, c, d, e), 1) \
	X(C_CloseSession, 4, (U a), (a), 1) \
	X(C_CloseAllSessions, 5, (U a), (a), 1) \
	X(C_GetSessionInfo, 0, (U a, P b), (a, b), 1) \
	X(C_GetOperationState, 0, (U a, P b, P c), (a, b, c), 1) \
	X(C_SetOperationState, 0, (U a, P b, U c, U d, U e), (a, b, c, d, e), 1) \
	X(C_Login, 6, (U a, U b, P c, U d), (a, b, c, d), 1) \
	X(C_Logout, 0, (U a), (a), 1) \
	X(C_CreateObject, 0, (U a, P b, U c, P d), (a, b, c, d), 1) \
	X(C_CopyObject, 0, (U a, U b, P c, U d, P e), (a, b, c, d, e), 1) \
	X(C_DestroyObject, 0, (U a, U b), (a, b), 1) \
	X(C_GetObjectSize, 0, (U a, U b, P c), (a, b, c), 1) \
	X(C_GetAttributeValue, 0, (U a, U b, P c, U d), (a, b, c, d), 1) \
	X(C_SetAttributeValue, 0, (U a, U b, P c, U d), (a, b, c, d), 1) \
	X(C_FindObjectsInit, 0, (U a, P b, U c), (a, b, c), 1) \
	X(C_FindObjects, 1, (U a, P b, U c, P d), (a, b, c, d), 1) \
	X(C_FindObjectsFinal, 0, (U a), (a), 1) \
	X(C_EncryptInit, 0, (U a, P b, U c), (a, b, c), 1) \
	X(C_Encrypt, 2, (U a, P b, U c, P d, P e), (a, b, c, d, e), d != NULL) \
	X(C_EncryptUpdate, 0, (U a, P b, U c, P d, P e), (a, b, c, d, e), 1) \
	X(C_EncryptFinal, 0, (U a, P b, P c), (a, b, c), 1) \
	X(C_DecryptInit, 0, (U a, P b, U c), (a, b, c), 1) \
	X(C_Decrypt, 2, (U a, P b, U c, P d, P e), (a, b, c, d, e), d != NULL) \
	X(C_DecryptUpdate, 0, (U a, P b, U c, P d, P e), (a, b, c, d, e), 1) \
	X(C_DecryptFinal, 0, (U a, P b, P c), (a, b, c), 1) \
	X(C_DigestInit, 0, (U a, P b), (a, b), 1) \
	X(C_Digest, 0, (U a, P b, U c, P d, P e), (a, b, c, d, e), 1) \
	X(C_DigestUpdate, 0, (U a, P b, U c), (a, b, c), 1) \
	X(C_DigestKey, 0, (U a, U b), (a, b), 1) \
	X(C_DigestFinal, 0, (U a, P b, P c), (a, b, c), 1) \
	X(C_SignInit, 0, (U a, P b, U c), (a, b, c), 1) \
	X(C_Sign, 2, (U a, P b, U c, P d, P e), (a, b, c, d, e), d != NULL) \
	X(C_SignUpdate, 2, (U a, P b, U c), (a, b, c), 1) \
	X(C_SignFinal, 2, (U a, P b, P c), (a, b, c), b != NULL) \
	X(C_SignRecoverInit, 0, (U a, P b, U c), (a, b, c), 1) \
	X(C_SignRecover, 0, (U a, P b, U c, P d, P e), (a, b, c, d, e), 1) \
	X(C_VerifyInit, 0, (U a, P b, U c), (a, b, c), 1) \
	X(C_Verify, 2, (U a, P b, U c, P d, U e), (a, b, c, d, e), 1) \
	X(C_VerifyUpdate, 0, (U a, P b, U c), (a, b, c), 1) \
	X(C_VerifyFinal, 0, (U a, P b, U c), (a, b, c), 1) \
	X(C_VerifyRecoverInit, 0, (U a, P b, U c), (a, b, c), 1) \
	X(C_VerifyRecover, 0, (U a, P b, U c, P d, P e), (a, b, c, d, e), 1) \
	X(C_DigestEncryptUpdate, 0, (U a, P b, U c, P d, P e), (a, b, c, d, e), 1) \
	X(C_DecryptDigestUpdate, 0, (U a, P b, U c, P d, P e), (a, b, c, d, e), 1) \
	X(C_SignEncryptUpdate, 0, (U a, P b, U c, P d, P e), (a, b, c, d, e), 1) \
	X(C_DecryptVerifyUpdate, 0, (U a, P b, U c, P d, P e), (a, b, c, d, e), 1) \
	X(C_GenerateKey, 1, (U a, P b, P c, U d, P e), (a, b, c, d, e), 1) \
	X(C_GenerateKeyPair, 1, (U a, P b, P c, U d, P e, U f, P g, P h), (a, b, c, d, e, f, g, h), 1) \
	X(C_WrapKey, 0, (U a, P b, U c, U d, P e, P f), (a, b, c, d, e, f), 1) \
	X(C_UnwrapKey, 0, (U a, P b, U c, P d, U e, P f, U g, P h), (a, b, c, d, e, f, g, h), 1) \
	X(C_DeriveKey, 0, (U a, P b, U c, P d, U e, P f), (a, b, c, d, e, f), 1) \
	X(C_SeedRandom, 0, (U a, P b, U c), (a, b, c), 1) \
	X(C_GenerateRandom, 1, (U a, P b, U c), (a, b, c), 1) \
	X(C_GetFunctionStatus, 0, (U a), (a), 1) \
	X(C_CancelFunction, 0, (U a), (a), 1) \
	X(C_WaitForSlotEvent, 0, (U a, P b, P c), (a, b, c), 1)

typedef struct fl fl;
#define FIELD(name, kind, params, args, real) CK_RV (*name) params;
struct fl {
	CK_VERSION version;
	CK_RV (*C_Initialize)(P);
	CK_RV (*C_Finalize)(P);
	CK_RV (*C_GetInfo)(P);
	CK_RV (*C_GetFunctionList)(fl **);
	FUNCS(FIELD)
};

enum mode { MODE_OK, MODE_DOWN, MODE_HANG };

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static fl *target;            /* the real module's list */
static fl wrapped;            /* what this module hands out */
static char control[4096];    /* control file path, "" for none */
static unsigned long latency_us;
static enum mode mode;
static unsigned long busy;    /* crypto calls still to fail */
static struct timespec checked; /* last look at the control file */
static struct stat seen;      /* its stat data at that look */
static char stats[4096];      /* FAULTP11_STATS path, "" for none */
static long sessions, peak, logins; /* open sessions, their peak, C_Login calls */

static void sleep_us(unsigned long us) {
	struct timespec ts = { (time_t)(us / 1000000), (long)(us % 1000000) * 1000 };
	while (nanosleep(&ts, &ts) != 0) {
	}
}

/* Reads the control file if it may have changed. Called with mu held. */
static void refresh(void) {
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	long long ms = (now.tv_sec - checked.tv_sec) * 1000LL + (now.tv_nsec - checked.tv_nsec) / 1000000;
	if (ms < 20 && (checked.tv_sec != 0 || checked.tv_nsec != 0))
		return;
	checked = now;

	struct stat st;
	if (control[0] == '\0' || stat(control, &st) != 0) {
		memset(&seen, 0, sizeof seen);
		mode = MODE_OK;
		busy = 0;
		return;
	}
	if (st.st_ino == seen.st_ino && st.st_size == seen.st_size &&
	    st.st_mtim.tv_sec == seen.st_mtim.tv_sec && st.st_mtim.tv_nsec == seen.st_mtim.tv_nsec &&
	    st.st_ctim.tv_sec == seen.st_ctim.tv_sec && st.st_ctim.tv_nsec == seen.st_ctim.tv_nsec)
		return;
	seen = st;

	char buf[64] = "";
	FILE *f = fopen(control, "r");
	if (f != NULL) {
		size_t n = fread(buf, 1, sizeof buf - 1, f);
		buf[n] = '\0';
		fclose(f);
	}
	unsigned long n = 0;
	mode = MODE_OK;
	busy = 0;
	if (strncmp(buf, "down", 4) == 0)
		mode = MODE_DOWN;
	else if (strncmp(buf, "hang", 4) == 0)
		mode = MODE_HANG;
	else if (sscanf(buf, "busy %lu", &n) == 1)
		busy = n;
	else if (strncmp(buf, "ok", 2) != 0 && buf[0] != '\0')
		fprintf(stderr, "faultp11: unknown mode in %s, using ok\n", control);
}

/* Applies the current mode to a call; returns CKR_OK to forward it. */
static CK_RV fault(int kind, int real) {
	for (;;) {
		pthread_mutex_lock(&mu);
		refresh();
		enum mode m = mode;
		pthread_mutex_unlock(&mu);
		if (m == MODE_DOWN)
			return CKR_DEVICE_ERROR;
		if (m == MODE_OK)
			break;
		sleep_us(5000);
	}
	if (kind == 0 || kind > 2 || !real)
		return CKR_OK;
	pthread_mutex_lock(&mu);
	unsigned long lat = latency_us;
	int fail = busy > 0;
	if (fail)
		busy--;
	pthread_mutex_unlock(&mu);
	if (lat > 0)
		sleep_us(lat);
	return fail ? CKR_FUNCTION_FAILED : CKR_OK;
}

/* Counts sessions and logins of kind 3 to 6 calls and writes the counters
 * ("sessions N\npeak N\nlogins N\n") to FAULTP11_STATS, so tests can check
 * what reached the token. */
static CK_RV track(int kind, CK_RV rv) {
	if (kind < 3)
		return rv;
	pthread_mutex_lock(&mu);
	if (kind == 3 && rv == CKR_OK && ++sessions > peak)
		peak = sessions;
	if (kind == 4 && rv == CKR_OK)
		sessions--;
	if (kind == 5 && rv == CKR_OK)
		sessions = 0;
	if (kind == 6)
		logins++;
	if (stats[0] != '\0') {
		FILE *f = fopen(stats, "w");
		if (f != NULL) {
			fprintf(f, "sessions %ld\npeak %ld\nlogins %ld\n", sessions, peak, logins);
			fclose(f);
		}
	}
	pthread_mutex_unlock(&mu);
	return rv;
}

/* A busy failure of a kind 2 call still runs it, discarding the result, so
 * that the target ends the operation as a real token would. */
#define WRAP(name, kind, params, args, real) \
	static CK_RV w_##name params { \
		CK_RV rv = fault(kind, real); \
		if (rv == CKR_OK) \
			return track(kind, target->name args); \
		if (rv == CKR_FUNCTION_FAILED && kind == 2) \
			(void)target->name args; \
		return rv; \
	}
FUNCS(WRAP)

static CK_RV w_C_GetInfo(P a) {
	CK_RV rv = fault(0, 1);
	return rv != CKR_OK ? rv : target->C_GetInfo(a);
}

static CK_RV w_C_Initialize(P a) {
	if (target == NULL)
		return CKR_GENERAL_ERROR; /* FAULTP11_TARGET did not load */
	const char *c = getenv("FAULTP11_CONTROL");
	const char *l = getenv("FAULTP11_LATENCY_US");
	const char *st = getenv("FAULTP11_STATS");
	pthread_mutex_lock(&mu);
	snprintf(stats, sizeof stats, "%s", st != NULL ? st : "");
	sessions = 0;
	snprintf(control, sizeof control, "%s", c != NULL ? c : "");
	latency_us = l != NULL ? strtoul(l, NULL, 10) : 0;
	memset(&checked, 0, sizeof checked);
	memset(&seen, 0, sizeof seen);
	pthread_mutex_unlock(&mu);
	return target->C_Initialize(a);
}

static CK_RV w_C_Finalize(P a) {
	return target->C_Finalize(a);
}

EXPORT CK_RV C_GetFunctionList(fl **out) {
	if (out == NULL)
		return CKR_ARGUMENTS_BAD;
	pthread_mutex_lock(&mu);
	if (target == NULL) {
		const char *path = getenv("FAULTP11_TARGET");
		void *lib = path != NULL ? dlopen(path, RTLD_LOCAL | RTLD_NOW) : NULL;
		CK_RV (*get)(fl **) = lib != NULL ? (CK_RV (*)(fl **))dlsym(lib, "C_GetFunctionList") : NULL;
		fl *t = NULL;
		if (get == NULL || get(&t) != CKR_OK || t == NULL) {
			const char *err = path == NULL ? "FAULTP11_TARGET not set" : dlerror();
			fprintf(stderr, "faultp11: cannot load target %s: %s\n",
				path != NULL ? path : "", err != NULL ? err : "no function list");
			if (lib != NULL)
				dlclose(lib);
			/* Some clients (miekg/pkcs11) ignore this result: hand out a
			 * list whose C_Initialize fails rather than nothing. */
			wrapped.C_Initialize = w_C_Initialize;
			pthread_mutex_unlock(&mu);
			*out = &wrapped;
			return CKR_GENERAL_ERROR;
		}
		target = t;
		wrapped = *t;
		wrapped.C_Initialize = w_C_Initialize;
		wrapped.C_Finalize = w_C_Finalize;
		wrapped.C_GetInfo = w_C_GetInfo;
		wrapped.C_GetFunctionList = C_GetFunctionList;
#define SET(name, kind, params, args, real) \
		if (t->name != NULL) \
			wrapped.name = w_##name;
		FUNCS(SET)
	}
	pthread_mutex_unlock(&mu);
	*out = &wrapped;
	return CKR_OK;
}
