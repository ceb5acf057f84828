// The Linux i2c-dev uAPI for vhost-user-i2c's host passthrough: the message and SMBus structs and
// the ioctl numbers (imported into Swift from the kernel's headers; the calls go through
// CVhostUser's vhu_ioctl_ptr).
#ifndef CI2C_H
#define CI2C_H

#include <linux/i2c.h>
#include <linux/i2c-dev.h>

/// The most messages one I2C_RDWR call accepts (the kernel's I2C_RDWR_IOCTL_MAX_MSGS).
static const unsigned vhu_i2c_rdwr_max_messages = I2C_RDWR_IOCTL_MAX_MSGS;
/// The longest message one I2C_RDWR call accepts (i2c-dev refuses longer ones).
static const unsigned vhu_i2c_max_message_length = 8192;

#endif
