/*
 * A throwaway Kafka-protocol broker for tests: librdkafka's built-in mock cluster.
 *
 *   kafka-mock [--brokers N] [--partitions N] [TOPIC ...]
 *
 * Starts a mock cluster of N brokers (default 1), pre-creates each TOPIC with --partitions partitions
 * (default 4; topics used without being created here are auto-created by the mock with its own
 * default of 4 partitions), prints the bootstrap address ("host:port[,host:port]") on one line of
 * stdout, and serves until stdin reaches EOF or it gets SIGTERM/SIGINT. The test harness keeps stdin
 * open as a pipe, so the broker also goes away when the harness dies.
 *
 * Build: cc -O1 -o kafka-mock kafka-mock.c -lrdkafka
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

static volatile sig_atomic_t stop_requested = 0;

static void on_signal(int sig) {
        (void)sig;
        stop_requested = 1;
}

int main(int argc, char **argv) {
        int brokers = 1, partitions = 4, i;
        char errstr[512];
        rd_kafka_conf_t *conf;
        rd_kafka_t *rk;
        rd_kafka_mock_cluster_t *mcluster;
        struct sigaction sa;

        memset(&sa, 0, sizeof(sa));
        sa.sa_handler = on_signal;
        sigaction(SIGTERM, &sa, NULL);
        sigaction(SIGINT, &sa, NULL);
        signal(SIGPIPE, SIG_IGN);

        for (i = 1; i < argc; i++) {
                if (!strcmp(argv[i], "--brokers") && i + 1 < argc)
                        brokers = atoi(argv[++i]);
                else if (!strcmp(argv[i], "--partitions") && i + 1 < argc)
                        partitions = atoi(argv[++i]);
        }
        if (brokers < 1 || partitions < 1) {
                fprintf(stderr, "kafka-mock: --brokers and --partitions must be >= 1\n");
                return 2;
        }

        conf = rd_kafka_conf_new();
        /* The handle only hosts the mock cluster; keep its own logging quiet. */
        rd_kafka_conf_set(conf, "log_level", "3", errstr, sizeof(errstr));
        rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
        if (!rk) {
                fprintf(stderr, "kafka-mock: rd_kafka_new failed: %s\n", errstr);
                return 1;
        }

        mcluster = rd_kafka_mock_cluster_new(rk, brokers);
        if (!mcluster) {
                fprintf(stderr, "kafka-mock: rd_kafka_mock_cluster_new failed\n");
                rd_kafka_destroy(rk);
                return 1;
        }

        for (i = 1; i < argc; i++) {
                rd_kafka_resp_err_t err;
                if (!strcmp(argv[i], "--brokers") || !strcmp(argv[i], "--partitions")) {
                        i++;
                        continue;
                }
                err = rd_kafka_mock_topic_create(mcluster, argv[i], partitions, brokers < 3 ? brokers : 3);
                if (err) {
                        fprintf(stderr, "kafka-mock: cannot create topic %s: %s\n", argv[i], rd_kafka_err2str(err));
                        rd_kafka_mock_cluster_destroy(mcluster);
                        rd_kafka_destroy(rk);
                        return 1;
                }
        }

        printf("%s\n", rd_kafka_mock_cluster_bootstraps(mcluster));
        fflush(stdout);

        while (!stop_requested) {
                struct pollfd pfd = {.fd = 0, .events = POLLIN};
                int r = poll(&pfd, 1, 200);
                if (r < 0 && errno != EINTR)
                        break;
                if (r > 0) {
                        char buf[256];
                        ssize_t n = read(0, buf, sizeof(buf));
                        if (n <= 0)
                                break; /* EOF: the harness is gone */
                }
        }

        rd_kafka_mock_cluster_destroy(mcluster);
        rd_kafka_destroy(rk);
        return 0;
}
