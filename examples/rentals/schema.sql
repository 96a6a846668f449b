-- Third example (examples/rentals/): shapes real schemas have, beyond mappings/.
-- A payment belongs to its rental AND to its customer (some payments have no rental); films change
-- rating and price in one update; a column will be added later (promo_code); stores have a location
-- (POINT); a film's release year may be YEAR 0000; a rental names a copy (inventory) whose film's
-- title its events carry (lookups).
CREATE DATABASE IF NOT EXISTS rentals;

CREATE TABLE rentals.customer (
  customer_id INT PRIMARY KEY,
  name        VARCHAR(100) NOT NULL,
  active      TINYINT(1) NOT NULL DEFAULT 1
) ENGINE=InnoDB;

CREATE TABLE rentals.store (
  store_id INT PRIMARY KEY,
  city     VARCHAR(50) NOT NULL,
  location POINT NOT NULL
) ENGINE=InnoDB;

CREATE TABLE rentals.film (
  film_id      INT PRIMARY KEY,
  title        VARCHAR(200) NOT NULL,
  rating       ENUM('G','PG','PG-13','R','NC-17') NOT NULL DEFAULT 'G',
  rental_rate  DECIMAL(4,2) NOT NULL,
  release_year YEAR NULL
) ENGINE=InnoDB;

CREATE TABLE rentals.inventory (       -- a reference table: which film a copy on the shelf is
  inventory_id INT PRIMARY KEY,
  film_id      INT NOT NULL,
  store_id     INT NOT NULL
) ENGINE=InnoDB;

CREATE TABLE rentals.rental (
  rental_id    INT PRIMARY KEY,
  customer_id  INT NOT NULL,
  inventory_id INT NOT NULL,
  store_id     INT NOT NULL,
  status      VARCHAR(20) NOT NULL DEFAULT 'out',
  KEY ix_rental_customer (customer_id)
) ENGINE=InnoDB;

CREATE TABLE rentals.payment (
  payment_id  INT PRIMARY KEY,
  customer_id INT NOT NULL,
  rental_id   INT NULL,               -- late fees and deposits belong to no rental
  amount      DECIMAL(6,2) NOT NULL,
  KEY ix_payment_rental (rental_id),
  KEY ix_payment_customer (customer_id)
) ENGINE=InnoDB;
