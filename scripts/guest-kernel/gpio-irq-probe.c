// SPDX-License-Identifier: GPL-2.0
/*
 * gpio-irq-probe: an in-kernel consumer of one GPIO interrupt, for vhost-user-devices' guest tests.
 *
 * The GPIO character device hands user space edges only; a level-triggered interrupt needs a
 * consumer inside the kernel. scripts/prepare-guest-kernel builds this file into the test kernel
 * (drivers/gpio, next to gpiolib). Its interface is /sys/kernel/gpio_irq_probe/:
 *
 *   request  write "CHIP OFFSET TRIGGER": requests line OFFSET of the chip whose label or device
 *            name (gpiochipN) is CHIP as an input, and its interrupt with TRIGGER (high, low,
 *            rising, falling); the count starts at 0. One line at a time (EBUSY otherwise).
 *   count    how many times the interrupt fired since the request
 *   release  write anything: frees the interrupt and the line
 *
 * The interrupt is threaded and one-shot: the line stays masked while the thread runs and is
 * unmasked after it, so a level interrupt whose level holds fires again after every unmask.
 */

#include <linux/atomic.h>
#include <linux/gpio/consumer.h>
#include <linux/gpio/driver.h>
#include <linux/init.h>
#include <linux/interrupt.h>
#include <linux/kobject.h>
#include <linux/mutex.h>
#include <linux/string.h>
#include <linux/sysfs.h>

#include "gpiolib.h"

static DEFINE_MUTEX(probe_lock);  /* protects probe_desc and probe_irq */
static struct gpio_desc *probe_desc;
static int probe_irq;
static atomic_t probe_count = ATOMIC_INIT(0);

static const struct {
	const char *name;
	unsigned long flags;
} probe_triggers[] = {
	{ "high", IRQF_TRIGGER_HIGH },
	{ "low", IRQF_TRIGGER_LOW },
	{ "rising", IRQF_TRIGGER_RISING },
	{ "falling", IRQF_TRIGGER_FALLING },
};

static irqreturn_t probe_thread(int irq, void *data)
{
	atomic_inc(&probe_count);
	return IRQ_HANDLED;
}

static int probe_match_chip(struct gpio_chip *gc, const void *name)
{
	return (gc->label && !strcmp(gc->label, name)) ||
	       !strcmp(dev_name(&gc->gpiodev->dev), name);
}

static ssize_t request_store(struct kobject *kobj, struct kobj_attribute *attr,
			     const char *buf, size_t len)
{
	char chip[32], trigger[16];
	unsigned long flags = 0;
	struct gpio_device *gdev;
	struct gpio_desc *desc;
	unsigned int offset, i;
	int irq, ret;

	if (sscanf(buf, "%31s %u %15s", chip, &offset, trigger) != 3)
		return -EINVAL;
	for (i = 0; i < ARRAY_SIZE(probe_triggers); i++)
		if (!strcmp(trigger, probe_triggers[i].name))
			flags = probe_triggers[i].flags;
	if (!flags)
		return -EINVAL;

	guard(mutex)(&probe_lock);
	if (probe_desc)
		return -EBUSY;
	gdev = gpio_device_find(chip, probe_match_chip);
	if (!gdev)
		return -ENODEV;
	desc = gpio_device_get_desc(gdev, offset);
	ret = IS_ERR(desc) ? PTR_ERR(desc) : gpiod_request(desc, "gpio-irq-probe");
	gpio_device_put(gdev);
	if (ret)
		return ret;

	ret = gpiod_direction_input(desc);
	irq = ret ? ret : gpiod_to_irq(desc);
	if (irq < 0) {
		ret = irq;
		goto free;
	}
	atomic_set(&probe_count, 0);
	ret = request_threaded_irq(irq, NULL, probe_thread, flags | IRQF_ONESHOT,
				   "gpio-irq-probe", NULL);
	if (ret)
		goto free;
	probe_desc = desc;
	probe_irq = irq;
	return len;
free:
	gpiod_free(desc);
	return ret;
}

static ssize_t count_show(struct kobject *kobj, struct kobj_attribute *attr, char *buf)
{
	return sysfs_emit(buf, "%d\n", atomic_read(&probe_count));
}

static ssize_t release_store(struct kobject *kobj, struct kobj_attribute *attr,
			     const char *buf, size_t len)
{
	guard(mutex)(&probe_lock);
	if (!probe_desc)
		return -ENOENT;
	free_irq(probe_irq, NULL);
	gpiod_free(probe_desc);
	probe_desc = NULL;
	return len;
}

static struct kobj_attribute request_attribute = __ATTR_WO(request);
static struct kobj_attribute count_attribute = __ATTR_RO(count);
static struct kobj_attribute release_attribute = __ATTR_WO(release);

static struct attribute *probe_attributes[] = {
	&request_attribute.attr,
	&count_attribute.attr,
	&release_attribute.attr,
	NULL,
};

static const struct attribute_group probe_group = { .attrs = probe_attributes };

static int __init gpio_irq_probe_init(void)
{
	struct kobject *dir = kobject_create_and_add("gpio_irq_probe", kernel_kobj);

	if (!dir)
		return -ENOMEM;
	return sysfs_create_group(dir, &probe_group);
}
late_initcall(gpio_irq_probe_init);
