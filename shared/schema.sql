-- The readings schema (protocol v1), as `iotgw db init` creates it on MySQL 8 / MariaDB 10.6+.
-- `iotgw db init` applies versioned migrations (gateway/sinks/schema.py), and the suite checks that the result
-- equals this file. Times are UTC with millisecond precision.

CREATE TABLE IF NOT EXISTS readings (
  device       VARCHAR(32)  NOT NULL,           -- reading identity: (device, node, boot, seq)
  node         VARCHAR(16)  NOT NULL,
  boot         INT UNSIGNED NOT NULL,
  seq          INT UNSIGNED NOT NULL,
  site         VARCHAR(32)  NOT NULL,
  sampled_at   DATETIME(3)  NULL,               -- the collector's clock, never rewritten (NULL: no clock)
  clock_source VARCHAR(4)   NOT NULL,           -- rtc | ntp | none
  clock        VARCHAR(6)   NOT NULL,           -- ok | none | unset | future (see shared/protocol.md)
  value        DOUBLE       NOT NULL,
  unit         VARCHAR(16)  NOT NULL,
  cached       BOOLEAN      NOT NULL,           -- replayed from the collector's cache
  received_at  DATETIME(3)  NOT NULL,           -- the gateway's clock when it received the reading
  PRIMARY KEY (device, node, boot, seq),
  KEY readings_sampled (sampled_at),
  KEY readings_site_device (site, device, sampled_at)
) ENGINE=InnoDB;

CREATE TABLE IF NOT EXISTS device_status (
  site         VARCHAR(32)  NOT NULL,           -- the latest status per collector node (shared/protocol.md section 6)
  device       VARCHAR(32)  NOT NULL,
  node         VARCHAR(16)  NOT NULL,
  boot         INT UNSIGNED NULL,
  state        VARCHAR(8)   NOT NULL,           -- online | offline
  role         VARCHAR(8)   NULL,               -- active | standby | single
  cached       INT UNSIGNED NULL,               -- records in the collector's cache
  cap          INT UNSIGNED NULL,               -- cache capacity in records
  dropped      INT UNSIGNED NULL,               -- samples not recorded since boot (cache full)
  reset_cause  VARCHAR(8)   NULL,               -- power | wdt | ext | brownout | soft | unknown
  store_err    INT UNSIGNED NULL,               -- storage write/verify/sync failures since boot
  clock        VARCHAR(5)   NULL,               -- rtc | lost | none
  period_ms    INT UNSIGNED NULL,               -- sample period
  received_at  DATETIME(3)  NOT NULL,           -- the gateway's clock when the status arrived
  PRIMARY KEY (site, device, node)
) ENGINE=InnoDB;

CREATE TABLE IF NOT EXISTS iotgw_schema (
  version     INT UNSIGNED NOT NULL PRIMARY KEY,
  applied_at  DATETIME(3)  NOT NULL,
  description VARCHAR(200) NOT NULL
) ENGINE=InnoDB;
